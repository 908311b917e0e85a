"""kamailio-example/module/build.sh --kamailio-src DIR --kamailio-bin BIN:
what it refuses (a binary of another release, a core of another build
system, other compile flags, not a kamailio), and the module README it
generates from doc/wic_tna.xml. Needs the cores of run.sh
(WIC_TNA_KV_ENV_MAKE, WIC_TNA_KV_ENV_CMAKE: build_core.sh's env files)."""

import os
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_SH = REPO / "kamailio-example" / "module" / "build.sh"
DEBIAN_KAMAILIO = "/usr/sbin/kamailio"


def core(name):
    path = os.environ.get(name)
    if not path:
        pytest.fail("%s is not set (tests/kamailio_versions/run.sh sets it)"
                    % name)
    env = {}
    for line in Path(path).read_text().splitlines():
        k, _, v = line.partition("=")
        env[k] = shlex.split(v)[0]
    return env


@pytest.fixture(scope="module")
def make58():
    return core("WIC_TNA_KV_ENV_MAKE")


@pytest.fixture(scope="module")
def cmake60():
    return core("WIC_TNA_KV_ENV_CMAKE")


def build(tree, binary, out, extra_env=None, *args):
    env = dict(os.environ)
    env.pop("WIC_TNA_BUILD_SYSTEM", None)
    env.update(extra_env or {})
    return subprocess.run(
        ["bash", str(BUILD_SH), "--kamailio-src", str(tree),
         "--kamailio-bin", str(binary), "--out", str(out)] + list(args),
        capture_output=True, text=True, timeout=600, env=env)


def fake_kamailio(tmp_path, version_line, flags_line):
    """A stand-in binary whose `-v` says what a test needs."""
    f = tmp_path / "kamailio"
    f.write_text("#!/bin/sh\nprintf '%%s\\n' '%s' '%s' 'id: unknown'\n"
                 % (version_line, flags_line))
    f.chmod(0o755)
    return f


def flags_of(binary):
    out = subprocess.run([binary, "-v"], capture_output=True, text=True,
                         timeout=30).stdout
    return next(line for line in out.splitlines()
                if line.startswith("flags: ")).rstrip()


def assert_refused(r, out, *words):
    assert r.returncode != 0, (r.stdout, r.stderr)
    for w in words:
        assert w in r.stderr, (w, r.stderr[-3000:])
    assert not (Path(out) / "wic_tna.so").exists(), "installed anyway"


def test_binary_of_another_release_is_refused(make58, cmake60, tmp_path):
    r = build(make58["KAM_TREE"], cmake60["KAM_BIN"], tmp_path / "out")
    assert_refused(r, tmp_path / "out", "version mismatch",
                   "Kamailio 6.0.7", "is 5.8.8")


def test_debian_kamailio_with_another_tree_is_refused(make58, tmp_path):
    r = build(make58["KAM_TREE"], DEBIAN_KAMAILIO, tmp_path / "out")
    assert_refused(r, tmp_path / "out", "version mismatch", "is 5.8.8")


def test_make_module_for_a_cmake_core_is_refused(cmake60, tmp_path):
    """Forced to build with make for a CMake-built 6.0.7 core, the module
    says x86_64/linux where the core says x86_64/Linux: the core would
    refuse it ("module version mismatch"); build.sh refuses it first."""
    r = build(cmake60["KAM_TREE"], cmake60["KAM_BIN"], tmp_path / "out",
              {"WIC_TNA_BUILD_SYSTEM": "make"})
    assert_refused(r, tmp_path / "out", "is not for 'kamailio 6.0.7 (",
                   "/Linux)'", "not installed")


def test_cmake_core_with_a_tree_without_cmake_is_refused(make58, tmp_path):
    binary = fake_kamailio(tmp_path, "version: kamailio 5.8.8 (x86_64/Linux) ",
                           flags_of(make58["KAM_BIN"]))
    r = build(make58["KAM_TREE"], binary, tmp_path / "out")
    assert_refused(r, tmp_path / "out", "built with CMake",
                   "has no CMake build")


def test_other_compile_flags_are_refused(make58, tmp_path):
    """A core built with other options (here: one flag less) gets no
    module built with the tree's defaults."""
    flags = flags_of(make58["KAM_BIN"])
    assert ", USE_MCAST" in flags, flags
    binary = fake_kamailio(tmp_path,
                           "version: kamailio 5.8.8 (x86_64/linux) ",
                           flags.replace(", USE_MCAST", ""))
    r = build(make58["KAM_TREE"], binary, tmp_path / "out")
    assert_refused(r, tmp_path / "out", "other compile flags",
                   "not installed")


def test_not_a_kamailio_is_refused(make58, tmp_path):
    r = build(make58["KAM_TREE"], "/bin/true", tmp_path / "out")
    assert_refused(r, tmp_path / "out", "is it kamailio?")


def test_matching_builds_carry_the_cores_strings(make58, cmake60):
    """What run.sh built and loaded: each module has its core's version
    string and compile flags (the core's own load check)."""
    for c, osname in ((make58, "linux"), (cmake60, "Linux")):
        so = Path(c["KAM_TREE"]).parents[1] / "wic_tna" / "wic_tna.so"
        strings = set(so.read_bytes().split(b"\0"))
        v = "kamailio %s (%s/%s)" % (c["KAM_VERSION"], os.uname().machine,
                                     osname)
        assert v.encode() in strings, v
        assert flags_of(c["KAM_BIN"])[len("flags: "):].encode() in strings


def test_readme_is_generated_from_the_docbook(cmake60, tmp_path):
    """kamailio-example/module/README is what Kamailio's DocBook tools make
    of doc/wic_tna.xml (regenerate: build.sh --kamailio-src DIR --readme)."""
    env = dict(os.environ, LC_ALL="C")
    r = subprocess.run(
        ["bash", str(BUILD_SH), "--kamailio-src", cmake60["KAM_TREE"],
         "--readme", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    made = (tmp_path / "README").read_text()
    shipped = (BUILD_SH.parent / "README").read_text()
    assert "wic_tna.bar iss" in made and "replay_binding (str)" in made
    assert made == shipped, (
        "kamailio-example/module/README is not what doc/wic_tna.xml makes: "
        "bash kamailio-example/module/build.sh --kamailio-src %s --readme"
        % cmake60["KAM_TREE"])
