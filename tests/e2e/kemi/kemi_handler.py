"""e2e test only: answers a REGISTER from the KEMI functions of the native
module wic_tna (KSR.wic_tna.verify_expires, KSR.wic_tna.origin) and its
pseudo-variables read with KSR.pv.get."""

import KSR


class Handler:
    def child_init(self, rank):
        return 0

    def register(self, msg):
        auth = KSR.pv.get("$hdr(Authorization)") or ""
        rc = KSR.wic_tna.verify_expires(auth, KSR.pv.get("$tu"), 3600)
        origin_rc = KSR.wic_tna.origin("https://webrtc.socialnet.example")
        status = KSR.pv.get("$wic_tna(status)")
        challenge = KSR.pv.get("$wic_tna(challenge)") or ""
        if challenge:
            KSR.hdr.append_to_reply("WWW-Authenticate: %s\r\n" % challenge)
        KSR.hdr.append_to_reply("X-Kemi: rc=%d origin=%d impi=%s expires=%s\r\n"
                                % (rc, origin_rc,
                                   KSR.pv.get("$wic_tna(impi)") or "",
                                   KSR.pv.get("$wic_tna(expires)")))
        KSR.sl.sl_send_reply(int(status), "KEMI %s" % KSR.pv.get("$wic_tna(reason)"))
        return 1


def mod_init():
    return Handler()
