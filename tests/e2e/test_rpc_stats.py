"""The native module's RPC wic_tna.stats is a structured reply, not a JSON
string: kamcmd prints it as a structure, a JSON-RPC client (module jsonrpcs
of epcscf.cfg) gets the JSON object, with the library's names, numbers as
integers and booleans as booleans."""

import json

import pytest

from harness import CLI, ISSUER_A, ISSUER_B, Deployment
from tokens import identity, mint


@pytest.fixture
def native(workdir):
    d = Deployment(workdir, mode="native")
    d.start()
    yield d
    d.stop()


def parse_kamcmd(text):
    """kamcmd's print of a structure: "name: value", "name: {" ... "}";
    an array is a block of bare values. Values are text."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    pos = 0

    def block():
        nonlocal pos
        members, items = {}, []
        while pos < len(lines):
            line = lines[pos]
            pos += 1
            if line == "}":
                break
            name, sep, value = line.partition(": ")
            if not sep:
                if line == "{":
                    items.append(block())
                else:
                    items.append(line)
            elif value == "{":
                members[name] = block()
            else:
                members[name] = value
        assert not (members and items), text
        return items if items else members

    assert lines and lines[0] == "{", text
    pos = 1
    return block()


def expired_register(dep):
    with dep.udp() as c:
        r = c.register(identity()[1], ["Bearer " + mint(iat_offset=-900,
                                                        exp_offset=-600)])
    assert r.status == 401, r.raw
    return r


def test_kamcmd_stats_is_a_structure(native):
    r = native.ep.rpc("wic_tna.stats")
    assert r.returncode == 0, (r.stdout, r.stderr)
    # a structure, not one JSON string
    assert r.stdout.startswith("{\n"), r.stdout
    assert '"outcomes"' not in r.stdout and '{"' not in r.stdout, r.stdout
    before = parse_kamcmd(r.stdout)
    assert set(before) == set(native.stats()), before
    assert before["fleet"] == {"configured": "0"}, before
    assert before["replay"]["enabled"] == "0", before
    assert int(before["issuers_configured"]) == 2, before

    expired_register(native)
    native.bar(ISSUER_B)
    after = parse_kamcmd(native.ep.rpc("wic_tna.stats").stdout)
    n0 = int(before["outcomes"].get(ISSUER_A, {}).get("expired", "0"))
    assert int(after["outcomes"][ISSUER_A]["expired"]) == n0 + 1, after
    # an array: a block of bare values
    assert after["barred"] == [ISSUER_B], after


def test_jsonrpc_stats_counter_increases_after_a_rejected_register(native):
    before = native.stats()
    expired_register(native)
    after = native.stats()
    n0 = before["outcomes"].get(ISSUER_A, {}).get("expired", 0)
    assert after["outcomes"][ISSUER_A]["expired"] == n0 + 1, after
    # JSON types: numbers are integers, booleans booleans, lists lists
    assert type(after["outcomes"][ISSUER_A]["expired"]) is int, after
    assert type(after["reload_generation"]) is int, after
    assert type(after["issuers_configured"]) is int, after
    assert type(after["replay"]["capacity"]) is int, after
    assert after["replay"]["enabled"] is False, after
    assert after["fleet"] == {"configured": False}, after
    assert after["barred"] == [] and after["remote"] == {}, after


def test_rpc_stats_is_the_librarys_json(native, workdir):
    """The structured reply carries the library's stats JSON unchanged: the
    CLI on the same shared state (the module's state_file) prints the same
    object, but for the configuration's path and the per-process cache."""
    expired_register(native)
    native.bar(ISSUER_A)
    config = workdir / "cli.toml"
    text = native.config.read_text()
    cut = text.index("\n[")
    config.write_text(text[:cut] + '\nstate_file = "%s"\n' % (
        workdir / "epcscf.state") + text[cut:])
    r = native.cli("stats", "--config", config)
    assert r.returncode == 0, (r.stdout, r.stderr)
    lib = json.loads(r.stdout)
    rpc = native.stats()
    for d in (lib, rpc):
        d.pop("config")
        d.pop("process")
    assert rpc == lib
    assert rpc["barred"] == [ISSUER_A]


def test_rpc_stats_doc(native):
    r = native.ep.rpc("system.methodHelp", "wic_tna.stats")
    assert r.returncode == 0, r.stdout
    assert "structure" in r.stdout and "JSON" not in r.stdout, r.stdout
