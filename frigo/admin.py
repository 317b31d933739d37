"""Operator commands: fridges' broker credentials (`frigo devices`), the broker's TLS (`frigo pki`),
retailers' API keys (`frigo retailers`) and the API's tokens (`frigo tokens`).

Both are Typer apps for the main command to mount; they import the cloud's modules only when run,
so the edge install (without the ``cloud`` extra) can still load this file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from sqlmodel import Session

devices_app = typer.Typer(
    help="Fridges' broker credentials: provision, revoke, list, write Mosquitto's files.",
    no_args_is_help=True,
)
retailers_app = typer.Typer(
    help="Retailers of the order API: create one with its API key, add, list and revoke keys.",
    no_args_is_help=True,
)
pki_app = typer.Typer(
    help="A private CA and server certificate for the broker's TLS listener.", no_args_is_help=True
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        help="sqlite:///PATH or postgresql+psycopg://USER@HOST/DB [default: FRIGO_CLOUD_DATABASE_URL]"
    ),
]
PasswordFile = Annotated[
    Path | None, typer.Option("--mosquitto-passwd", help="Rewrite this Mosquitto password file.")
]
AclFile = Annotated[Path | None, typer.Option("--mosquitto-acl", help="Rewrite this Mosquitto ACL file.")]
KeyDays = Annotated[
    int | None, typer.Option("--days", min=1, max=3650, help="How long the key lives [default: 365 days]")
]
RELOAD_HINT = "reload Mosquitto to apply them: systemctl reload mosquitto (or kill -HUP its pid)"


@contextmanager
def _session(database_url: str | None, needs: str = "devices") -> Iterator[Session]:
    """Open the cloud database named by ``database_url`` or, by default, the cloud's settings."""
    from sqlalchemy import inspect, make_url
    from sqlmodel import Session

    from cloud.db.engine import create_db_engine
    from cloud.settings import CloudSettings

    url = database_url or CloudSettings().database_url
    engine = create_db_engine(url)
    try:
        if not inspect(engine).has_table(needs):
            shown = make_url(url).render_as_string(hide_password=True)
            raise typer.BadParameter(
                f"{shown} has no {needs} table: run `frigo cloud migrate` first", param_hint="--database-url"
            )
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def _write_files(
    session: Session, password_file: Path, acl_file: Path, cloud_users: dict[str, str] | None
) -> None:
    from cloud.identity.devices import write_mosquitto_files

    written = write_mosquitto_files(session, password_file, acl_file, cloud_users)
    typer.echo(
        f"wrote {written.password_file} and {written.acl_file}: {len(written.devices)} device(s), "
        f"cloud user(s): {', '.join(written.cloud_users) or 'none'}"
    )
    if not written.cloud_users:
        typer.echo(
            "warning: no cloud user; give --cloud-user and --cloud-password-env (one pair per cloud "
            "worker) so the cloud can connect",
            err=True,
        )
    typer.echo(RELOAD_HINT)


def _utc(moment: datetime | None) -> str:
    """Format a stored time in UTC (SQLite gives it back naive, already in UTC)."""
    if moment is None:
        return "-"
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Print rows as columns under their header."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())


def _paired(password_file: Path | None, acl_file: Path | None) -> tuple[Path, Path] | None:
    if (password_file is None) != (acl_file is None):
        raise typer.BadParameter("give both --mosquitto-passwd and --mosquitto-acl, or neither")
    if password_file is None or acl_file is None:
        return None
    return password_file, acl_file


@devices_app.command()
def provision(
    device_id: Annotated[str, typer.Argument(help="The fridge's device id, also its MQTT username.")],
    household: Annotated[
        str | None, typer.Option(help="Join this existing household [default: a new one, hh-DEVICE_ID]")
    ] = None,
    database_url: DatabaseUrl = None,
    mosquitto_passwd: PasswordFile = None,
    mosquitto_acl: AclFile = None,
) -> None:
    """Issue a device its secret (a known device gets a new one; the old one stops working)."""
    from cloud.identity.devices import DeviceAdminError, provision
    from shared.errors import InvalidTopic

    files = _paired(mosquitto_passwd, mosquitto_acl)
    with _session(database_url) as session:
        try:
            secret = provision(session, device_id, household)
        except (DeviceAdminError, InvalidTopic) as exc:
            raise typer.BadParameter(str(exc)) from None
        typer.echo(f"device {device_id} provisioned; its MQTT username is {device_id} and its secret is:")
        typer.echo(secret)
        typer.echo(
            "This secret is not stored and will not be shown again: put it in the fridge's settings now "
            "(mqtt.password or FRIGO_EDGE_MQTT__PASSWORD).",
            err=True,
        )
        if files is not None:
            _write_files(session, *files, cloud_users=None)
        else:
            typer.echo(
                "Mosquitto does not know the new secret until you run `frigo devices write-mosquitto` "
                "and reload it.",
                err=True,
            )


@devices_app.command()
def revoke(
    device_id: Annotated[str, typer.Argument(help="The fridge's device id.")],
    database_url: DatabaseUrl = None,
    mosquitto_passwd: PasswordFile = None,
    mosquitto_acl: AclFile = None,
) -> None:
    """Revoke a device's credential; provisioning it again issues a new one."""
    from cloud.identity.devices import revoke

    files = _paired(mosquitto_passwd, mosquitto_acl)
    with _session(database_url) as session:
        device = revoke(session, device_id)
        if device is None:
            raise typer.BadParameter(f"no device {device_id!r}", param_hint="DEVICE_ID")
        typer.echo(f"device {device_id} revoked at {_utc(device.revoked_at)}")
        if files is not None:
            _write_files(session, *files, cloud_users=None)
        else:
            typer.echo(
                "Mosquitto still admits it until you run `frigo devices write-mosquitto` and reload it."
            )


@devices_app.command("list")
def list_(database_url: DatabaseUrl = None) -> None:
    """List every device and the state of its credential."""
    from cloud.identity.devices import list_devices

    with _session(database_url) as session:
        rows = [
            (
                device.id,
                device.household_id,
                "revoked" if device.revoked_at is not None else "active" if device.secret_hash else "none",
                _utc(device.last_seen_at) if device.last_seen_at else "never",
            )
            for device in list_devices(session)
        ]
    header = ("DEVICE", "HOUSEHOLD", "CREDENTIAL", "LAST SEEN")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())


@devices_app.command("write-mosquitto")
def write_mosquitto(
    password_file: Annotated[Path, typer.Option(help="Mosquitto password file to (re)write.")],
    acl_file: Annotated[Path, typer.Option(help="Mosquitto ACL file to (re)write.")],
    cloud_user: Annotated[
        list[str] | None,
        typer.Option(
            help="A cloud worker's MQTT username, also its client id under use_username_as_clientid: "
            "repeat for each worker [default: keep the files' cloud users]"
        ),
    ] = None,
    cloud_password_env: Annotated[
        list[str] | None,
        typer.Option(
            help="Environment variable holding the password of the --cloud-user in the same position; "
            "repeat as often as --cloud-user."
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Write Mosquitto's password and ACL files: every active device, plus the cloud users."""
    cloud_users = _cloud_users(cloud_user or [], cloud_password_env or [])
    from cloud.identity.devices import DeviceAdminError

    with _session(database_url) as session:
        try:
            _write_files(session, password_file, acl_file, cloud_users)
        except DeviceAdminError as exc:
            raise typer.BadParameter(str(exc)) from None


def _cloud_users(names: list[str], variables: list[str]) -> dict[str, str] | None:
    """Pair each cloud username with the password in its environment variable; None if no user."""
    if len(names) != len(variables):
        raise typer.BadParameter(
            f"{len(names)} --cloud-user but {len(variables)} --cloud-password-env: give one "
            "--cloud-password-env per --cloud-user, in the same order"
        )
    if not names:
        return None
    if len(set(names)) != len(names):
        raise typer.BadParameter("a --cloud-user is given twice: give each worker its own name")
    if len(set(variables)) != len(variables):
        raise typer.BadParameter(
            "a --cloud-password-env is given twice: give each cloud user its own password",
            param_hint="--cloud-password-env",
        )
    users: dict[str, str] = {}
    for name, variable in zip(names, variables, strict=True):
        password = os.environ.get(variable, "")
        if not password:
            raise typer.BadParameter(f"${variable} is unset or empty", param_hint="--cloud-password-env")
        users[name] = password
    return users


@pki_app.command()
def init(
    directory: Annotated[Path, typer.Option("--dir", help="Where to keep the CA and the server's files.")],
    host: Annotated[
        list[str],
        typer.Option(help="A DNS name or IP address devices use to reach the broker; repeat for more."),
    ],
    port: Annotated[int, typer.Option(help="The TLS listener's port, for the printed configuration.")] = 8883,
    ca_days: Annotated[int, typer.Option(min=1, help="How long the CA is valid.")] = 3650,
    server_days: Annotated[int, typer.Option(min=1, help="How long the server certificate is valid.")] = 825,
) -> None:
    """Make a CA (kept if it exists) and a server certificate for HOSTs; print Mosquitto's lines."""
    from cloud.errors import ConfigurationError
    from cloud.identity.devices import LISTENER_OPTIONS
    from cloud.mqtt.pki import CA_CERT, make_ca, make_server_cert

    if (directory / CA_CERT).exists():
        typer.echo(f"using the existing CA in {directory}")
    else:
        ca = make_ca(directory, "Frigo broker CA", ca_days)
        typer.echo(f"made a CA: {ca.cert} (give this to devices), {ca.key} (keep it offline if you can)")
    try:
        server = make_server_cert(directory, directory, host, server_days)
    except ConfigurationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--host") from None
    typer.echo(f"made a server certificate for {', '.join(host)}: {server.cert}")
    typer.echo("\n# mosquitto.conf: the key must be readable by the user Mosquitto runs as")
    typer.echo(f"listener {port}")
    typer.echo(f"cafile {server.ca_cert}")
    typer.echo(f"certfile {server.cert}")
    typer.echo(f"keyfile {server.key}")
    for option in LISTENER_OPTIONS:  # per listener: this one needs them too
        typer.echo(option)
    typer.echo(f"\n# devices and cloud: FRIGO_EDGE_MQTT__TLS_CA_FILE={server.ca_cert}, port {port}")


@retailers_app.command("create")
def retailers_create(
    name: Annotated[str, typer.Argument(help="The retailer's name; its id is made from it.")],
    days: KeyDays = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a retailer and print its API key (shown once; only its hash is stored)."""
    from cloud.identity.retailers import KEY_LIFETIME, RetailerError, create_retailer

    lifetime = KEY_LIFETIME if days is None else timedelta(days=days)
    with _session(database_url, needs="retailers") as session:
        try:
            retailer, key = create_retailer(session, name, datetime.now(UTC), lifetime=lifetime)
        except RetailerError as exc:
            raise typer.BadParameter(str(exc), param_hint="NAME") from None
        session.commit()
        typer.echo(f"retailer {retailer.id} ({retailer.name}) created; its API key is:")
        typer.echo(key)
        typer.echo(
            "This key is not stored and will not be shown again: the retailer sends it as "
            "'Authorization: Bearer <key>'.",
            err=True,
        )


RetailerId = Annotated[str, typer.Argument(help="The retailer's id (frigo retailers list).")]


@retailers_app.command("key")
def retailers_key(
    retailer_id: RetailerId,
    days: KeyDays = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Give a retailer one more API key (for rotation: the old keys keep working until revoked)."""
    from cloud.identity.retailers import KEY_LIFETIME, RetailerError, new_key

    lifetime = KEY_LIFETIME if days is None else timedelta(days=days)
    with _session(database_url, needs="retailers") as session:
        try:
            key = new_key(session, retailer_id, datetime.now(UTC), lifetime=lifetime)
        except RetailerError as exc:
            raise typer.BadParameter(str(exc), param_hint="RETAILER_ID") from None
        session.commit()
        typer.echo(key)


@retailers_app.command("list")
def retailers_list(database_url: DatabaseUrl = None) -> None:
    """List the retailers with their keys' prefixes."""
    from sqlmodel import select

    from cloud.db.tables import Retailer, RetailerKey
    from cloud.identity.tokens import state_at

    now = datetime.now(UTC)
    with _session(database_url, needs="retailers") as session:
        for retailer in session.exec(select(Retailer).order_by(Retailer.id)):
            keys = session.exec(select(RetailerKey).where(RetailerKey.retailer_id == retailer.id)).all()
            shown = ", ".join(
                f"{k.prefix}… ({state_at(k.expires_at, k.revoked_at, now)} since {_utc(k.created_at)})"
                for k in keys
            )
            typer.echo(f"{retailer.id}\t{retailer.name}\t{shown or 'no keys'}")


@retailers_app.command("keys")
def retailers_keys(retailer_id: RetailerId, database_url: DatabaseUrl = None) -> None:
    """List a retailer's API keys: id, prefix, times and state (never the key)."""
    from cloud.identity.retailers import list_keys

    now = datetime.now(UTC)
    with _session(database_url, needs="retailers") as session:
        keys = list_keys(session.connection(), retailer_id)
    if keys is None:
        raise typer.BadParameter(
            f"no retailer {retailer_id!r}: `frigo retailers list` shows them", param_hint="RETAILER_ID"
        )
    _table(
        ("ID", "PREFIX", "CREATED", "EXPIRES", "REVOKED", "STATE"),
        [
            (
                str(k.id),
                f"{k.prefix}…",
                _utc(k.created_at),
                _utc(k.expires_at),
                _utc(k.revoked_at),
                k.state(now),
            )
            for k in keys
        ],
    )


@retailers_app.command("revoke-key")
def retailers_revoke_key(
    retailer_id: RetailerId,
    key_id: Annotated[int, typer.Argument(help="The key's id (frigo retailers keys RETAILER_ID).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a retailer's API key at once: its requests get 401, its web sign-ins end."""
    from cloud.identity.retailers import revoke_key

    now = datetime.now(UTC)
    with _session(database_url, needs="retailers") as session:
        revoked = revoke_key(session.connection(), retailer_id, key_id, now)
        session.commit()
    if revoked is None:
        raise typer.BadParameter(
            f"retailer {retailer_id!r} has no key {key_id}: `frigo retailers keys {retailer_id}` lists them",
            param_hint="KEY_ID",
        )
    typer.echo(
        f"key {revoked.id} ({revoked.prefix}…) of {retailer_id} revoked at {_utc(revoked.revoked_at)}; "
        "its web sign-ins ended with it"
    )


tokens_app = typer.Typer(
    help="Bearer tokens for the HTTP API, a household's (its own data only) or an operator's (admin): "
    "issue, list, revoke.",
    no_args_is_help=True,
)


@tokens_app.command("household")
def tokens_household(
    household_id: Annotated[str, typer.Argument(help="The household (GET /households lists them).")],
    days: Annotated[
        int | None, typer.Option("--days", min=1, max=3650, help="How long it lives [default: 365 days]")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Issue a household its token (shown once): it opens that household's routes only."""
    _issue("household", household_id, days, database_url)


@tokens_app.command("admin")
def tokens_admin(
    days: Annotated[
        int | None, typer.Option("--days", min=1, max=3650, help="How long it lives [default: 90 days]")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Issue an operator's token (shown once): it opens every household's and the admin routes."""
    _issue("admin", None, days, database_url)


@tokens_app.command("list")
def tokens_list(
    household: Annotated[str | None, typer.Option(help="This household's tokens only.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List the tokens: id, role, household, prefix, times and state (never the token)."""
    from cloud.identity.tokens import list_tokens

    now = datetime.now(UTC)
    with _session(database_url, needs="access_tokens") as session:
        tokens = list_tokens(session.connection(), household)
    _table(
        ("ID", "ROLE", "HOUSEHOLD", "PREFIX", "CREATED", "EXPIRES", "REVOKED", "STATE"),
        [
            (
                str(t.id),
                t.role,
                t.household_id or "-",
                f"{t.prefix}…",
                _utc(t.created_at),
                _utc(t.expires_at),
                _utc(t.revoked_at),
                t.state(now),
            )
            for t in tokens
        ],
    )


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id (frigo tokens list).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a token at once: its requests get 401, its web sign-ins end."""
    from cloud.identity.tokens import revoke_token

    with _session(database_url, needs="access_tokens") as session:
        revoked = revoke_token(session.connection(), token_id, datetime.now(UTC))
        session.commit()
    if revoked is None:
        raise typer.BadParameter(
            f"no token {token_id}: `frigo tokens list` shows them", param_hint="TOKEN_ID"
        )
    whose = revoked.household_id or "an operator"
    typer.echo(
        f"token {revoked.id} ({revoked.prefix}…, {whose}) revoked at {_utc(revoked.revoked_at)}; "
        "its web sign-ins ended with it"
    )


def _issue(
    role: Literal["household", "admin"], household_id: str | None, days: int | None, database_url: str | None
) -> None:
    from cloud.identity.tokens import AccessError, issue_token

    lifetime = None if days is None else timedelta(days=days)
    with _session(database_url, needs="access_tokens") as session:
        try:
            token = issue_token(session, role, household_id, datetime.now(UTC), lifetime=lifetime)
        except AccessError as exc:
            raise typer.BadParameter(str(exc)) from None
        session.commit()
    typer.echo(token)
    typer.echo(
        "This token is not stored and will not be shown again: send it as 'Authorization: Bearer <token>'.",
        err=True,
    )
