"""Device credentials: provision, rotate, revoke, verify; Mosquitto's password and ACL files."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session
from typer.testing import CliRunner

from cloud.db.engine import create_db_engine, create_schema
from cloud.db.tables import Device, Household
from cloud.identity import devices
from frigo.admin import devices_app
from shared import topics
from shared.errors import InvalidTopic
from tests.support.services import require_tool

CLOUD_USER = "frigo-cloud"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    create_schema(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def stored_text(engine: Engine) -> str:
    """Return every value of the devices and households tables as one string."""
    with engine.connect() as connection:
        rows = [
            *connection.execute(text("SELECT * FROM devices")),
            *connection.execute(text("SELECT * FROM households")),
        ]
    return " ".join(str(value) for row in rows for value in row)


def password_users(path: Path) -> dict[str, str]:
    return dict(line.split(":", 1) for line in path.read_text().splitlines())


# --- provision, rotate, revoke, verify ---------------------------------------------------------


def test_a_provisioned_secret_verifies_and_only_its_hashes_are_stored(engine: Engine) -> None:
    with Session(engine) as session:
        secret = devices.provision(session, "kitchen")
        assert devices.verify(session, "kitchen", secret)
        assert not devices.verify(session, "kitchen", secret[:-1] + ("A" if secret[-1] != "A" else "B"))
        assert not devices.verify(session, "kitchen", "")
        device = session.get(Device, "kitchen")
        assert device is not None
        assert device.household_id == "hh-kitchen"
        assert session.get(Household, "hh-kitchen") is not None
        assert device.secret_hash is not None
        assert device.secret_hash.startswith("$argon2id$")
        assert device.broker_hash is not None
        assert devices.mosquitto_verify(secret, device.broker_hash)
    assert len(secret) >= 43  # 32 random bytes
    assert secret not in stored_text(engine)


def test_every_device_gets_its_own_secret(engine: Engine) -> None:
    with Session(engine) as session:
        secrets = {devices.provision(session, f"fridge-{n}") for n in range(5)}
        assert len(secrets) == 5
        first = devices.provision(session, "other")
        assert not devices.verify(session, "fridge-0", first), "one device's secret opens no other device"


def test_provisioning_again_rotates_the_secret(engine: Engine) -> None:
    with Session(engine) as session:
        old = devices.provision(session, "kitchen")
        new = devices.provision(session, "kitchen")
        assert new != old
        assert devices.verify(session, "kitchen", new)
        assert not devices.verify(session, "kitchen", old)
        device = session.get(Device, "kitchen")
        assert device is not None
        assert device.broker_hash is not None
        assert not devices.mosquitto_verify(old, device.broker_hash)


def test_a_device_can_join_an_existing_household_but_not_an_unknown_one(engine: Engine) -> None:
    with Session(engine) as session:
        devices.provision(session, "kitchen")
        devices.provision(session, "garage", "hh-kitchen")
        garage = session.get(Device, "garage")
        assert garage is not None
        assert garage.household_id == "hh-kitchen"
        assert session.get(Household, "hh-garage") is None
        with pytest.raises(devices.UnknownHouseholdError, match="hh-nowhere"):
            devices.provision(session, "cellar", "hh-nowhere")
        session.rollback()
        assert session.get(Device, "cellar") is None
        with pytest.raises(devices.DeviceAdminError, match="belongs to household 'hh-kitchen'"):
            devices.provision(session, "garage", "hh-other")


def test_a_device_id_that_could_not_be_a_username_and_topic_level_is_refused(engine: Engine) -> None:
    with Session(engine) as session:
        for bad in ("a/b", "+", "#", "", "x" * 65, "fridge:1"):
            with pytest.raises(InvalidTopic):
                devices.provision(session, bad)


def test_revoking_deletes_the_credential_and_provisioning_again_restores_one(engine: Engine) -> None:
    with Session(engine) as session:
        secret = devices.provision(session, "kitchen")
        revoked = devices.revoke(session, "kitchen")
        assert revoked is not None
        assert revoked.revoked_at is not None
        assert revoked.secret_hash is None
        assert revoked.broker_hash is None
        assert not devices.verify(session, "kitchen", secret)
        first_revocation = revoked.revoked_at
        again = devices.revoke(session, "kitchen")
        assert again is not None
        assert again.revoked_at == first_revocation
        assert devices.revoke(session, "nobody") is None

        fresh = devices.provision(session, "kitchen")
        assert devices.verify(session, "kitchen", fresh)
        assert not devices.verify(session, "kitchen", secret)
        device = session.get(Device, "kitchen")
        assert device is not None
        assert device.revoked_at is None


def test_unknown_and_auto_enrolled_devices_never_verify(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Household(id="hh-auto", name="auto", created_at=datetime.now(UTC)))
        session.flush()
        session.add(Device(id="auto", household_id="hh-auto", created_at=datetime.now(UTC)))
        session.commit()
        assert not devices.verify(session, "auto", "")
        assert not devices.verify(session, "auto", "anything")
        assert not devices.verify(session, "ghost", "anything")


# --- Mosquitto's hash --------------------------------------------------------------------------


def test_cloud_users_hashes_are_stretched_and_devices_keep_mosquittos_count(
    engine: Engine, tmp_path: Path
) -> None:
    with Session(engine) as session:
        devices.provision(session, "kitchen")
        devices.write_mosquitto_files(session, tmp_path / "passwd", tmp_path / "acl", {CLOUD_USER: "pw"})
    users = password_users(tmp_path / "passwd")
    assert users["kitchen"].startswith(f"$7${devices.DEVICE_ITERATIONS}$")
    assert users[CLOUD_USER].startswith(f"$7${devices.CLOUD_ITERATIONS}$")
    assert (devices.DEVICE_ITERATIONS, devices.CLOUD_ITERATIONS) == (101, 210_000)
    assert devices.mosquitto_verify("pw", users[CLOUD_USER])


def test_the_mosquitto_hash_is_pbkdf2_sha512_in_mosquittos_layout() -> None:
    hashed = devices.mosquitto_hash("s3cret", salt=bytes(range(12)))
    _, scheme, iterations, salt, digest = hashed.split("$")
    assert (scheme, iterations, salt) == ("7", "101", "AAECAwQFBgcICQoL")
    assert len(digest) == 88  # 64 bytes in base64
    assert devices.mosquitto_verify("s3cret", hashed)
    assert not devices.mosquitto_verify("s3creT", hashed)
    for broken in ("", "$6$abc$def", "$7$x$AAAA$AAAA", "$7$101$!!$AAAA", hashed[:-4]):
        assert not devices.mosquitto_verify("s3cret", broken)


@pytest.mark.mosquitto
def test_hashes_made_by_mosquitto_passwd_verify_with_ours(tmp_path: Path) -> None:
    tool = require_tool("mosquitto_passwd")
    passwords = tmp_path / "passwd"
    subprocess.run([tool, "-b", "-c", str(passwords), "kitchen", "Tr0ub4dor&3"], check=True, timeout=30)
    hashed = password_users(passwords)["kitchen"]
    assert hashed.startswith("$7$")
    assert devices.mosquitto_verify("Tr0ub4dor&3", hashed)
    assert not devices.mosquitto_verify("Tr0ub4dor&4", hashed)


# --- Mosquitto's files -------------------------------------------------------------------------


def test_the_files_hold_active_devices_and_the_cloud_user_but_no_secret(
    engine: Engine, tmp_path: Path
) -> None:
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    passwd, acl = directory / "passwd", directory / "acl"
    with Session(engine) as session:
        issued = {name: devices.provision(session, name) for name in ("a-fridge", "b-fridge", "c-fridge")}
        devices.revoke(session, "c-fridge")
        session.add(Device(id="auto", household_id="hh-a-fridge", created_at=datetime.now(UTC)))
        session.commit()
        written = devices.write_mosquitto_files(session, passwd, acl, {CLOUD_USER: "cloud-pw"})

    assert written.devices == ("a-fridge", "b-fridge")
    assert written.cloud_users == (CLOUD_USER,)
    users = password_users(passwd)
    assert set(users) == {"a-fridge", "b-fridge", CLOUD_USER}
    for name in ("a-fridge", "b-fridge"):
        assert devices.mosquitto_verify(issued[name], users[name])
    assert devices.mosquitto_verify("cloud-pw", users[CLOUD_USER])
    for secret in [*issued.values(), "cloud-pw"]:
        assert secret not in passwd.read_text()
        assert secret not in acl.read_text()

    lines = [line for line in acl.read_text().splitlines() if line and not line.startswith("#")]
    assert lines[: len(topics.acl_patterns())] == topics.acl_patterns()
    assert lines[len(topics.acl_patterns()) :] == [
        f"user {CLOUD_USER}",
        "topic read frigo/v1/devices/+/events",
        "topic read frigo/v1/devices/+/telemetry",
        "topic read frigo/v1/devices/+/availability",
        "topic write frigo/v1/devices/+/commands",
        "topic write frigo/v1/devices/+/config/desired",
        "topic write frigo/v1/devices/+/events",
        "topic write frigo/v1/devices/+/telemetry",
    ]
    assert "c-fridge" not in acl.read_text()
    assert "auto" not in passwd.read_text()
    for path in (passwd, acl):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in directory.iterdir()) == ["acl", "passwd"], "no temporary file is left"


def test_rewriting_without_cloud_users_keeps_the_files_cloud_users(engine: Engine, tmp_path: Path) -> None:
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    with Session(engine) as session:
        devices.provision(session, "a-fridge")
        devices.write_mosquitto_files(session, passwd, acl, {CLOUD_USER: "cloud-pw"})
        cloud_hash = password_users(passwd)[CLOUD_USER]
        passwd.chmod(0o640)
        devices.provision(session, "b-fridge")
        devices.write_mosquitto_files(session, passwd, acl)
        assert password_users(passwd)[CLOUD_USER] == cloud_hash
        assert set(password_users(passwd)) == {"a-fridge", "b-fridge", CLOUD_USER}
        assert f"user {CLOUD_USER}" in acl.read_text()
        assert stat.S_IMODE(passwd.stat().st_mode) == 0o640, "a rewrite keeps the file's mode"

        devices.write_mosquitto_files(session, passwd, acl, {"cloud-2": "other-pw"})
        assert set(password_users(passwd)) == {"a-fridge", "b-fridge", "cloud-2"}
        assert f"user {CLOUD_USER}" not in acl.read_text()


def test_a_cloud_user_may_not_share_a_name_with_a_device(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session:
        devices.provision(session, "kitchen")
        with pytest.raises(devices.DeviceAdminError, match="share a name with a device"):
            devices.write_mosquitto_files(session, tmp_path / "p", tmp_path / "a", {"kitchen": "pw"})
        with pytest.raises(devices.DeviceAdminError, match="invalid cloud username"):
            devices.write_mosquitto_files(session, tmp_path / "p", tmp_path / "a", {"bad:name": "pw"})
        with pytest.raises(devices.DeviceAdminError, match="empty password"):
            devices.write_mosquitto_files(session, tmp_path / "p", tmp_path / "a", {CLOUD_USER: ""})
    assert not (tmp_path / "p").exists()


# --- The `frigo devices` commands --------------------------------------------------------------


def test_the_devices_commands_provision_list_revoke_and_write_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    engine = create_db_engine(url)
    create_schema(engine)
    monkeypatch.setenv("FRIGO_CLOUD_DATABASE_URL", url)
    monkeypatch.setenv("CLOUD_PW", "cloud-secret")
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    runner = CliRunner()
    write = ["write-mosquitto", "--password-file", str(passwd), "--acl-file", str(acl)]

    done = runner.invoke(
        devices_app,
        [*write, "--cloud-user", CLOUD_USER, "--cloud-password-env", "CLOUD_PW"],
    )
    assert done.exit_code == 0, done.output
    done = runner.invoke(
        devices_app, ["provision", "kitchen", "--mosquitto-passwd", str(passwd), "--mosquitto-acl", str(acl)]
    )
    assert done.exit_code == 0, done.output
    secret = done.stdout.splitlines()[1]
    assert "not be shown again" in done.stderr
    with Session(engine) as session:
        assert devices.verify(session, "kitchen", secret)
    assert set(password_users(passwd)) == {"kitchen", CLOUD_USER}

    listed = runner.invoke(devices_app, ["list"])
    assert listed.exit_code == 0, listed.output
    assert secret not in listed.output
    assert listed.stdout.splitlines()[1].split()[:3] == ["kitchen", "hh-kitchen", "active"]

    done = runner.invoke(
        devices_app, ["revoke", "kitchen", "--mosquitto-passwd", str(passwd), "--mosquitto-acl", str(acl)]
    )
    assert done.exit_code == 0, done.output
    assert set(password_users(passwd)) == {CLOUD_USER}
    assert runner.invoke(devices_app, ["list"]).stdout.splitlines()[1].split()[2] == "revoked"

    assert runner.invoke(devices_app, ["revoke", "nobody"]).exit_code != 0
    assert runner.invoke(devices_app, ["provision", "bad/id"]).exit_code != 0
    refused = runner.invoke(
        devices_app,
        [*write, "--cloud-user", CLOUD_USER, "--cloud-password-env", "NO_SUCH_VAR"],
    )
    assert refused.exit_code != 0
    assert "unset or empty" in refused.output
    engine.dispose()


def test_write_mosquitto_gives_each_cloud_worker_its_own_user_and_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    engine = create_db_engine(url)
    create_schema(engine)
    engine.dispose()
    monkeypatch.setenv("FRIGO_CLOUD_DATABASE_URL", url)
    monkeypatch.setenv("PW_1", "first-secret")
    monkeypatch.setenv("PW_2", "second-secret")
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    write = ["write-mosquitto", "--password-file", str(passwd), "--acl-file", str(acl)]
    pairs = ["--cloud-user", "cloud-1", "--cloud-password-env", "PW_1"]
    pairs += ["--cloud-user", "cloud-2", "--cloud-password-env", "PW_2"]
    runner = CliRunner()

    done = runner.invoke(devices_app, [*write, *pairs])

    assert done.exit_code == 0, done.output
    assert "cloud user(s): cloud-1, cloud-2" in done.stdout
    users = password_users(passwd)
    assert devices.mosquitto_verify("first-secret", users["cloud-1"])
    assert devices.mosquitto_verify("second-secret", users["cloud-2"])
    acl_lines = acl.read_text().splitlines()
    for user in ("cloud-1", "cloud-2"):
        block = acl_lines[acl_lines.index(f"user {user}") + 1 :][:7]
        assert "topic read frigo/v1/devices/+/events" in block
        assert "topic write frigo/v1/devices/+/commands" in block

    for wrong, message in [
        (["--cloud-user", "cloud-1", "--cloud-user", "cloud-2", "--cloud-password-env", "PW_1"], "one"),
        (["--cloud-user", "cloud-1", "--cloud-password-env", "PW_1"] * 2, "given twice"),
        (["--cloud-user", "cloud-1", "--cloud-password-env", "PW_1", "--cloud-user", "cloud-2",
          "--cloud-password-env", "PW_1"], "its own password"),
    ]:  # fmt: skip
        refused = runner.invoke(devices_app, [*write, *wrong])
        assert refused.exit_code != 0
        assert message in refused.output
    assert password_users(passwd) == users, "a refused command leaves the files alone"


def test_the_devices_commands_refuse_a_database_without_the_schema(tmp_path: Path) -> None:
    done = CliRunner().invoke(devices_app, ["list", "--database-url", f"sqlite:///{tmp_path / 'empty.db'}"])
    assert done.exit_code != 0
    assert "frigo cloud migrate" in done.output
