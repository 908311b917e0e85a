"""e2e test only: answers a REGISTER from the KEMI functions of the native
module wic_tna (KSR.wic_tna.wic_tna_verify_expires,
KSR.wic_tna.wic_tna_origin: the cfg functions' names) and its
pseudo-variables read with KSR.pv.get."""

import KSR

ORIGIN = "https://webrtc.socialnet.example"


def last():
    """$wic_tna(status)/$wic_tna(reason) as text"""
    return "%s/%s" % (KSR.pv.get("$wic_tna(status)"),
                      KSR.pv.get("$wic_tna(reason)"))


class Handler:
    def child_init(self, rank):
        return 0

    def register(self, msg):
        auth = KSR.pv.get("$hdr(Authorization)") or ""
        to = KSR.pv.get("$tu")
        origin_rc = KSR.wic_tna.wic_tna_origin(ORIGIN)
        rc = KSR.wic_tna.wic_tna_verify_expires(auth, to, 3600)
        status = KSR.pv.get("$wic_tna(status)")
        reason = KSR.pv.get("$wic_tna(reason)")
        challenge = KSR.pv.get("$wic_tna(challenge)") or ""
        if challenge:
            KSR.hdr.append_to_reply("WWW-Authenticate: %s\r\n" % challenge)
        KSR.hdr.append_to_reply("X-Kemi: rc=%d origin=%d impi=%s expires=%s\r\n"
                                % (rc, origin_rc,
                                   KSR.pv.get("$wic_tna(impi)") or "",
                                   KSR.pv.get("$wic_tna(expires)")))

        # An origin check after the token check resets $wic_tna(...), the
        # KEMI function as the cfg function wic_tna_origin() (run here
        # through msg.call_function): the token check's result is gone.
        KSR.wic_tna.wic_tna_origin(ORIGIN)
        kemi_after = last()
        KSR.wic_tna.wic_tna_verify_expires(auth, to, 3600)
        verified_again = last()
        msg.call_function("wic_tna_origin", ORIGIN)
        cfg_after = last()
        KSR.hdr.append_to_reply("X-Kemi-Reset: before=%s/%s again=%s "
                                "kemi=%s cfg=%s\r\n"
                                % (status, reason, verified_again, kemi_after,
                                   cfg_after))

        KSR.sl.sl_send_reply(int(status), "KEMI %s" % reason)
        return 1


def mod_init():
    return Handler()
