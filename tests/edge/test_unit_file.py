"""The Pi's systemd unit (deploy/frigo-edge.service), read as systemd reads it: the agent's files
(edge.db: what the household keeps and eats, and when) are the frigo user's alone."""

from __future__ import annotations

from pathlib import Path

UNIT = Path(__file__).parents[2] / "deploy" / "frigo-edge.service"


def directives(text: str) -> dict[str, dict[str, list[str]]]:
    """Return every directive's values by section, as systemd reads a unit file.

    configparser cannot: systemd repeats keys (DeviceAllow) and continues lines with a backslash.
    """
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a directive outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a directive: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_parser_reads_repeated_keys_and_continued_lines() -> None:
    found = directives("[Service]\n# a comment\nDeviceAllow=a rw\nDeviceAllow=b rw\nExecStart=x \\\n  --y\n")
    assert found == {"Service": {"DeviceAllow": ["a rw", "b rw"], "ExecStart": ["x --y"]}}


def test_the_agent_creates_files_only_its_user_can_read() -> None:
    service = directives(UNIT.read_text())["Service"]
    # Files the agent creates (edge.db and its journal, the calibration) get no group or world
    # bits, whatever the system's default umask (022 on Raspberry Pi OS: world-readable).
    (umask,) = service["UMask"]
    assert int(umask, 8) & 0o077 == 0o077
    # Its state folder is closed to everyone else too, so that a file made before this unit (or by
    # hand) is not reachable either.
    assert service["StateDirectory"] == ["frigo-edge"]
    (mode,) = service["StateDirectoryMode"]
    assert int(mode, 8) & 0o077 == 0
    assert service["WorkingDirectory"] == ["/var/lib/frigo-edge"]
    assert service["User"] == ["frigo"]


def test_the_install_steps_do_not_open_the_state_folder() -> None:
    # The header's install steps, copied by people: a folder made world-readable there would be the
    # one systemd finds.
    header = [line for line in UNIT.read_text().splitlines() if line.startswith("#")]
    made = [line for line in header if "install -d" in line and "/var/lib/frigo-edge" in line]
    assert made, "the header says how to make the state folder"
    assert all("-m 0700" in line for line in made)
