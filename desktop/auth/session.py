"""The client facade: sign in, restore, the authorized session with transparent refresh, sign out.

Refresh flow, in one place (:meth:`AuthClient.request`): refresh early if the access token is
stale; send; on a 401 ``invalid_token`` refresh once and resend once. Two tries are needed
because the expiry the client computed can be wrong in ways it cannot see (the token was revoked,
the server restarted with new keys, the server's clock runs ahead); a second rejection of a
token that was just issued is final, so the flow never loops.

Refresh itself (:meth:`AuthClient._refresh`) is single-flight:

* across threads, a lock plus a *generation* number: a caller that waited for the lock while
  another thread refreshed sees a newer generation and reuses that result, so N concurrent
  callers with an expired token cause exactly one refresh request;
* across processes (the GUI and the CLI, two windows) sharing one stored session, a file lock
  keyed by issuer and username, and the stored refresh token re-read inside it: if another
  process rotated it meanwhile, the stored (unspent) one is used instead of ours (already spent),
  so the server never sees the same refresh token twice, which it would treat as theft.

The rotated refresh token is saved before the new access token is used: were the process to die
in between, the keyring would otherwise hold a spent token, and the next start would present it
and get the whole session revoked.

Observers (``on_refreshed``, ``on_session_ended``) are plain lists of callables, called on the
thread that did the work, after every lock is released; the GUI re-emits them as Qt signals.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from desktop.auth.discovery import (
    WELL_KNOWN_PATH,
    Endpoints,
    check_transport,
    normalize_server_url,
    parse_discovery,
)
from desktop.auth.errors import (
    AccessDenied,
    AuthError,
    ConfigurationError,
    InvalidCredentials,
    KeyringUnavailable,
    NotSignedIn,
    OAuthError,
    ServerError,
    ServerUnreachable,
    SessionEnded,
    TooManyAttempts,
)
from desktop.auth.store import StorageStatus, TokenStore
from desktop.auth.tokens import TokenSet

__all__ = ["AuthClient", "SessionStatus"]

logger = logging.getLogger(__name__)

_MAX_REASON_CHARS = 200
_NOT_REMEMBERED = "You chose not to stay signed in: the session ends when the program exits."


@dataclass(frozen=True)
class SessionStatus:
    """A snapshot of the session for display; contains no secret."""

    signed_in: bool
    username: str | None
    server_url: str
    access_expires_in: float | None
    access_lifetime: float | None
    refresh_count: int
    last_refreshed: datetime | None
    storage: StorageStatus
    remembered: bool


@dataclass
class _State:
    """The mutable session, guarded by ``AuthClient._state_lock``."""

    username: str | None = None
    tokens: TokenSet | None = None  # None: no usable access token yet (e.g. just restored)
    refresh_token: str | None = None
    in_store: bool = False  # the refresh token is (also) kept in the store
    storage_reason: str | None = None  # why it is not in the store, when that was not chosen
    generation: int = 0  # bumped whenever the tokens change
    attempts: int = 0  # refresh attempts made, successful or not
    last_failure: tuple[int, AuthError] | None = None  # (attempt, error) of a failed refresh
    refresh_count: int = 0
    last_refreshed: datetime | None = None
    storage_cache: StorageStatus | None = field(default=None)


class AuthClient:
    """Signs a person in against an OAuth 2.0 / OpenID Connect server and keeps them signed in.

    Every public method is thread-safe. All but :meth:`status` do network or keyring I/O and
    must be called off a GUI thread.

    ``lock_dir`` is where the cross-process refresh lock lives (``None``: the state directory,
    :func:`desktop.config.state_dir`); every process sharing a stored session must use the same
    one, which the GUI and the CLI do.

    Observers: ``on_refreshed: list[Callable[[], None]]`` (after every successful refresh) and
    ``on_session_ended: list[Callable[[SessionEnded], None]]`` (the refresh token was refused:
    expired, revoked or reused; also when a restore finds the stored token dead).
    """

    def __init__(
        self,
        server_url: str,
        *,
        client_id: str = "jwt-desktop",
        store: TokenStore,
        http: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        lock_dir: Path | None = None,
        timeout: float = 10.0,
        leeway: float = 30.0,
    ) -> None:
        self.server_url = normalize_server_url(server_url)
        self.client_id = client_id
        self._store = store
        self._owns_http = http is None
        self._http = http if http is not None else requests.Session()
        self._clock = clock
        self._lock_dir = lock_dir
        self._timeout = timeout
        self._leeway = leeway
        self._state = _State()
        self._state_lock = threading.Lock()  # short: guards _state, never held during I/O
        self._refresh_lock = threading.Lock()  # long: one refresh/sign-in/sign-out at a time
        self._discovery_lock = threading.Lock()
        self._endpoints: Endpoints | None = None
        self.on_refreshed: list[Callable[[], None]] = []
        self.on_session_ended: list[Callable[[SessionEnded], None]] = []

    # -- public API ------------------------------------------------------------------------------

    def sign_in(self, username: str, password: str, *, remember: bool) -> dict[str, Any]:
        """Password grant; keep the refresh token (keyring only if ``remember`` and possible);
        return the userinfo profile.

        The session starts as soon as the tokens arrive: if only the profile fetch then fails,
        the error is raised but the person stays signed in (a retry of :meth:`profile` works).
        """
        if not username or not password:
            raise InvalidCredentials(
                "Enter a username and a password.", error="invalid_request", status=None
            )
        endpoints = self.endpoints()
        form = {"grant_type": "password", "username": username, "password": password}
        scope = _scope_for(endpoints)
        if scope:
            form["scope"] = scope
        data = self._token_request(form, grant="password")
        tokens = TokenSet.from_response(data, now=self._clock())
        if tokens.refresh_token is None:
            raise ServerError("The server issued no refresh token, so the session cannot last.")
        with self._refresh_lock:
            in_store, reason = self._keep_new_session(username, tokens.refresh_token, remember)
            with self._state_lock:
                self._state = _State(
                    username=username,
                    tokens=tokens,
                    refresh_token=tokens.refresh_token,
                    in_store=in_store,
                    storage_reason=reason,
                    generation=self._state.generation + 1,
                    attempts=self._state.attempts,
                    storage_cache=self._state.storage_cache,
                )
        logger.info("Signed in as %s at %s (stored: %s)", username, self.server_url, in_store)
        self._refresh_storage_cache()
        return self.profile()

    def load_stored(self, username: str) -> bool:
        """Adopt a stored session without contacting the server (the first request refreshes).

        Returns False when nothing is stored or the keyring cannot be read. (Addition to the
        API contract: the CLI uses it so that ``profile`` costs one refresh, not two.)
        """
        try:
            refresh_token = self._store.load(self.server_url, username)
        except KeyringUnavailable as exc:
            logger.warning("Cannot read the stored session: %s", exc)
            self._refresh_storage_cache()
            return False
        if refresh_token is None:
            logger.info("No stored session for %s at %s", username, self.server_url)
            return False
        with self._refresh_lock, self._state_lock:
            self._state = _State(
                username=username,
                refresh_token=refresh_token,
                in_store=True,
                generation=self._state.generation + 1,
                attempts=self._state.attempts,
                storage_cache=self._state.storage_cache,
            )
        logger.info("Loaded the stored session of %s at %s", username, self.server_url)
        return True

    def restore(self, username: str) -> dict[str, Any] | None:
        """Silent sign-in from a stored refresh token: one refresh, then the profile.

        ``None`` when nothing is stored (or the keyring cannot be read: see
        :meth:`storage_status`). :class:`SessionEnded` when the stored token is dead (it is
        deleted). Network errors leave the session loaded, so a later call can retry.
        """
        if not self.load_stored(username):
            return None
        self._refresh_storage_cache()
        # Refresh now rather than on first use: a dead stored token should end the session at
        # start-up, where the sign-in dialog is expected, not in the middle of the first action.
        with self._state_lock:
            generation, attempts = self._state.generation, self._state.attempts
        self._refresh(generation, attempts)
        return self.profile()

    def profile(self) -> dict[str, Any]:
        """The userinfo claims, fetched through the authorized session."""
        endpoint = self.endpoints().userinfo_endpoint
        if endpoint is None:
            raise ConfigurationError("The server does not offer a userinfo endpoint.")
        response = self.request("GET", endpoint, headers={"Accept": "application/json"})
        with response:
            if response.status_code != 200:
                raise ServerError(
                    f"The server could not return the profile (HTTP {response.status_code}).",
                    status=response.status_code,
                )
            data = _json_object(response)
        if data is None:
            raise ServerError("The server's profile answer is not a JSON object.", status=200)
        return data

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """An authorized request (``url`` absolute, or a path on the server).

        Refresh early if stale; send; on 401 ``invalid_token`` refresh once and resend once.
        Returns the response for any status but redirects (never followed), 403 and 5xx; the
        caller closes it (or reads it).
        A request body is sent twice when a retry happens, so it must not be a one-shot stream.
        """
        if url.startswith("/"):
            url = self.server_url + url
        check_transport(url, what="The request URL")
        access, generation, attempts = self._access_token()
        response = self._send_authorized(method, url, access, kwargs)
        if response.status_code == 401 and _bearer_error(response)[0] == "invalid_token":
            response.close()
            logger.info("Access token rejected (invalid_token): refreshing once and resending")
            access, _, _ = self._refresh(generation, attempts)
            response = self._send_authorized(method, url, access, kwargs)
            if response.status_code == 401 and _bearer_error(response)[0] == "invalid_token":
                response.close()
                raise ServerError(
                    "The server rejected an access token it had just issued.", status=401
                )
        if response.status_code == 403:
            error, description = _bearer_error(response)
            if error is None:
                error, description = _oauth_error(_json_object(response))
            response.close()
            raise AccessDenied(
                "You do not have access to this resource"
                + (f": {_reason(description)}." if description else "."),
                error=error or "insufficient_scope",
                description=description,
                status=403,
            )
        if response.status_code >= 500:
            response.close()
            raise _server_failure(response.status_code)
        return response

    def sign_out(self) -> bool:
        """Revoke the refresh token at the server (RFC 7009), then forget it locally whatever
        happened. True when the server confirmed the revocation (or there was nothing to
        revoke), False when it could not be reached or refused."""
        confirmed = True
        with self._refresh_lock:
            with self._state_lock:
                username = self._state.username
                token = self._state.refresh_token
                in_store = self._state.in_store
            if username is None:
                return True
            try:
                with self._process_lock(username) if in_store else contextlib.nullcontext():
                    if in_store:
                        token = self._load_stored_or(username, token)
                    try:
                        confirmed = self._revoke(token) if token else True
                    finally:
                        if in_store:
                            self._delete_stored(username)
            except AuthError as exc:  # the cross-process lock timed out
                logger.warning("Sign-out could not take the refresh lock: %s", exc)
                confirmed = False
                if in_store:
                    self._delete_stored(username)
            finally:
                self._clear_session()
        logger.info("Signed out %s (revocation confirmed: %s)", username, confirmed)
        return confirmed

    def status(self) -> SessionStatus:
        """A snapshot for display. No network; the storage part is the last probed one."""
        with self._state_lock:
            state = self._state
            tokens = state.tokens
            now = self._clock()
            store_status = state.storage_cache or _unprobed_status(self._store, state.in_store)
            storage = self._effective_storage(store_status)
            return SessionStatus(
                signed_in=state.username is not None,
                username=state.username,
                server_url=self.server_url,
                access_expires_in=tokens.expires_in(now) if tokens else None,
                access_lifetime=tokens.lifetime if tokens else None,
                refresh_count=state.refresh_count,
                last_refreshed=state.last_refreshed,
                storage=storage,
                remembered=state.username is not None and state.in_store and storage.persistent,
            )

    def storage_status(self) -> StorageStatus:
        """Where the refresh token is kept (or would be); probes the keyring once."""
        store_status = self._refresh_storage_cache()
        with self._state_lock:
            return self._effective_storage(store_status)

    def endpoints(self) -> Endpoints:
        """The server's endpoints, from discovery (fetched once, then cached). Addition."""
        with self._discovery_lock:
            if self._endpoints is None:
                self._endpoints = self._discover()
            return self._endpoints

    def close(self) -> None:
        """Close the HTTP session (only when this client created it)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> AuthClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        with self._state_lock:
            username = self._state.username
        return (
            f"AuthClient(server_url={self.server_url!r}, client_id={self.client_id!r}, "
            f"username={username!r})"
        )

    # -- refresh -------------------------------------------------------------------------------

    def _access_token(self) -> tuple[str, int, int]:
        """A usable access token, refreshing first if it is missing or stale."""
        with self._state_lock:
            state = self._state
            if state.username is None:
                raise NotSignedIn("You are not signed in.")
            generation, attempts = state.generation, state.attempts
            tokens = state.tokens
            if tokens is not None and not tokens.is_stale(self._clock(), self._leeway):
                return tokens.access_token, generation, attempts
        return self._refresh(generation, attempts)

    def _refresh(self, seen_generation: int, seen_attempts: int) -> tuple[str, int, int]:
        """Refresh unless another thread already did since the caller looked (single flight).

        ``seen_*`` are what the caller read before deciding to refresh. A newer generation
        means another thread refreshed meanwhile: reuse its tokens. A failed attempt made
        meanwhile is re-raised rather than repeated, so 50 waiting callers against a dead
        server fail together after one timeout instead of one after another.
        """
        ended: SessionEnded | None = None
        with self._refresh_lock:
            with self._state_lock:
                state = self._state
                if state.generation != seen_generation and state.tokens is not None:
                    return state.tokens.access_token, state.generation, state.attempts
                failure = state.last_failure
                if state.attempts != seen_attempts and failure and failure[0] == state.attempts:
                    raise failure[1]
                if state.username is None:
                    raise NotSignedIn("You are not signed in.")
                state.attempts += 1
                attempt = state.attempts
                username, refresh_token, in_store = (
                    state.username,
                    state.refresh_token,
                    state.in_store,
                )
            logger.debug("Refreshing the access token (attempt %d)", attempt)
            try:
                tokens, in_store, reason = self._refresh_tokens(username, refresh_token, in_store)
            except SessionEnded as exc:
                logger.info("Session of %s ended: %s", username, exc.error)
                self._clear_session(failure=(attempt, exc))
                ended = exc
            except AuthError as exc:
                logger.warning("Refresh failed (session kept): %s", type(exc).__name__)
                with self._state_lock:
                    self._state.last_failure = (attempt, exc)
                raise
            else:
                with self._state_lock:
                    state = self._state
                    state.tokens = tokens
                    state.refresh_token = tokens.refresh_token
                    if state.in_store and not in_store:
                        state.storage_reason = reason
                    state.in_store = in_store
                    state.generation += 1
                    state.refresh_count += 1
                    state.last_refreshed = datetime.now(timezone.utc)
                    state.last_failure = None
                    result = (tokens.access_token, state.generation, state.attempts)
                logger.info("Access token refreshed (lifetime %s s)", tokens.lifetime)
        if ended is not None:
            self._notify(self.on_session_ended, ended)
            raise ended
        self._notify(self.on_refreshed)
        return result

    def _refresh_tokens(
        self, username: str, refresh_token: str | None, in_store: bool
    ) -> tuple[TokenSet, bool, str | None]:
        """One refresh request, under the cross-process lock when the session is stored."""
        with self._process_lock(username) if in_store else contextlib.nullcontext():
            if in_store:
                stored = self._load_stored_or(username, refresh_token)
                if stored is None:
                    raise SessionEnded(
                        "Your session has ended: another jwt-desktop window or command signed "
                        "out or signed in again. Please sign in again.",
                        error="invalid_grant",
                        description="the stored session was removed by another process",
                    )
                if stored != refresh_token:
                    # Another process rotated it: ours is spent, the stored one is not.
                    logger.info("Another process refreshed this session; using its token")
                    refresh_token = stored
            if refresh_token is None:
                raise SessionEnded(
                    "Your session has ended. Please sign in again.", error="invalid_grant"
                )
            try:
                data = self._token_request(
                    {"grant_type": "refresh_token", "refresh_token": refresh_token},
                    grant="refresh_token",
                )
            except SessionEnded:
                if in_store:
                    self._delete_stored(username)
                raise
            tokens = TokenSet.from_response(
                data, now=self._clock(), previous_refresh_token=refresh_token
            )
            reason = None
            if in_store and tokens.refresh_token != refresh_token:
                assert tokens.refresh_token is not None
                try:
                    self._store.save(self.server_url, username, tokens.refresh_token)
                except KeyringUnavailable as exc:
                    # The stored token is spent now; left there, the next start would present
                    # it and the server would revoke the session as stolen.
                    self._delete_stored(username)
                    in_store, reason = False, str(exc)
            return tokens, in_store, reason

    @contextlib.contextmanager
    def _process_lock(self, username: str) -> Iterator[None]:
        import filelock  # only needed once a session is stored

        lock_dir = self._lock_dir
        if lock_dir is None:
            from desktop.config import state_dir

            lock_dir = state_dir()
        lock_dir.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(f"{self.server_url}\n{username}".encode()).hexdigest()[:32]
        # Long enough for another process's refresh (HTTP timeout plus keyring calls).
        lock = filelock.FileLock(
            str(lock_dir / f"refresh-{key}.lock"), timeout=3 * self._timeout + 15
        )
        try:
            lock.acquire()
        except filelock.Timeout as exc:
            raise AuthError(
                "Another jwt-desktop process kept the session locked for too long. Try again."
            ) from exc
        try:
            yield
        finally:
            lock.release()

    # -- storage helpers -------------------------------------------------------------------------

    def _keep_new_session(
        self, username: str, refresh_token: str, remember: bool
    ) -> tuple[bool, str | None]:
        if not remember:
            # The person chose not to stay signed in: a session stored earlier would otherwise
            # restore them silently next time. Revoke it rather than only forget it, so it does
            # not live on at the server (a window still using it then ends its session too).
            if not self._store.status().persistent:
                return False, None  # nothing can be stored there
            with self._process_lock(username):
                stored = self._load_stored_or(username, None)
                if stored is not None:
                    self._revoke(stored)
                    self._delete_stored(username)
            return False, None
        try:
            self._store.save(self.server_url, username, refresh_token)
        except KeyringUnavailable as exc:
            return False, str(exc)
        return True, None

    def _load_stored_or(self, username: str, fallback: str | None) -> str | None:
        try:
            return self._store.load(self.server_url, username)
        except KeyringUnavailable as exc:
            logger.warning("Cannot re-read the stored session, using the one in memory: %s", exc)
            return fallback

    def _delete_stored(self, username: str) -> None:
        try:
            self._store.delete(self.server_url, username)
        except KeyringUnavailable as exc:
            logger.warning("Cannot delete the stored session: %s", exc)

    def _clear_session(self, failure: tuple[int, AuthError] | None = None) -> None:
        with self._state_lock:
            self._state = _State(
                generation=self._state.generation + 1,
                attempts=self._state.attempts,
                last_failure=failure,
                storage_cache=self._state.storage_cache,
            )

    def _refresh_storage_cache(self) -> StorageStatus:
        store_status = self._store.status()
        with self._state_lock:
            self._state.storage_cache = store_status
        return store_status

    def _effective_storage(self, store_status: StorageStatus) -> StorageStatus:
        state = self._state
        if state.username is None or state.in_store:
            return store_status
        # "You chose not to" is only true when there was a keyring to choose; otherwise the
        # keyring's own reason is the one the person needs.
        reason = state.storage_reason or (
            store_status.reason if not store_status.persistent else None
        )
        return StorageStatus(persistent=False, backend="memory", reason=reason or _NOT_REMEMBERED)

    # -- HTTP ------------------------------------------------------------------------------------

    def _discover(self) -> Endpoints:
        url = self.server_url + WELL_KNOWN_PATH
        response = self._send("GET", url, headers={"Accept": "application/json"})
        with response:
            status = response.status_code
            if status >= 500:
                raise _server_failure(status)
            if status != 200:
                raise ConfigurationError(
                    f"{self.server_url} has no OpenID Connect discovery document (HTTP {status})."
                )
            document = _json_object(response)
        if document is None:
            raise ConfigurationError(
                f"{self.server_url} is not an OpenID Connect server: its discovery document "
                "is not JSON."
            )
        return parse_discovery(document, server_url=self.server_url)

    def _token_request(self, form: dict[str, str], *, grant: str) -> dict[str, Any]:
        endpoint = self.endpoints().token_endpoint
        response = self._send(
            "POST",
            endpoint,
            data={**form, "client_id": self.client_id},
            headers={"Accept": "application/json"},
        )
        with response:
            data = _json_object(response)
            if response.status_code == 200:
                if data is None:
                    raise ServerError("The server's token answer is not JSON.", status=200)
                return data
            raise self._token_error(response, data, grant)

    def _token_error(  # noqa: PLR0911  # one return per kind of answer reads best
        self, response: requests.Response, data: dict[str, Any] | None, grant: str
    ) -> AuthError:
        status = response.status_code
        error, description = _oauth_error(data)
        if status == 429 or error == "slow_down":
            retry_after = _retry_after(response.headers.get("Retry-After"))
            wait = f"Try again in {retry_after} seconds." if retry_after else "Try again later."
            what = "sign-in attempts" if grant == "password" else "requests"
            return TooManyAttempts(
                f"Too many {what}. {wait}",
                error=error or "too_many_requests",
                description=description,
                status=status,
                retry_after=retry_after,
            )
        if status >= 500:
            return _server_failure(status)
        if error is None:
            return ServerError(
                f"The server gave an unexpected answer (HTTP {status}).", status=status
            )
        if error == "invalid_grant":
            if grant == "password":
                return InvalidCredentials(
                    "The username or password is incorrect.",
                    error=error,
                    description=description,
                    status=status,
                )
            reason = _reason(description) if description else "the server refused the session"
            return SessionEnded(
                f"Your session has ended: {reason}. Please sign in again.",
                error=error,
                description=description,
                status=status,
            )
        detail = f": {_reason(description)}" if description else f" ({error})"
        if error in ("invalid_client", "unauthorized_client", "unsupported_grant_type"):
            return ConfigurationError(
                f"The server does not accept this app (client id {self.client_id!r}){detail}."
            )
        return OAuthError(
            f"The server refused the request{detail}.",
            error=error,
            description=description,
            status=status,
        )

    def _revoke(self, token: str) -> bool:
        try:
            endpoint = self.endpoints().revocation_endpoint
            if endpoint is None:
                logger.warning("The server has no revocation endpoint; forgetting locally only")
                return False
            response = self._send(
                "POST",
                endpoint,
                data={
                    "token": token,
                    "token_type_hint": "refresh_token",
                    "client_id": self.client_id,
                },
            )
        except AuthError as exc:
            logger.warning("Could not revoke the session at the server: %s", exc)
            return False
        with response:
            if response.status_code == 200:
                return True
            logger.warning("The server did not confirm revocation (HTTP %d)", response.status_code)
            return False

    def _send_authorized(
        self, method: str, url: str, access: str, kwargs: dict[str, Any]
    ) -> requests.Response:
        options = dict(kwargs)
        headers = dict(options.pop("headers", None) or {})
        headers["Authorization"] = f"Bearer {access}"
        return self._send(method, url, headers=headers, **options)

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Every HTTP request goes through here: a timeout always, TLS always verified, no
        redirect followed, no proxy for plain http, and ``requests`` errors translated into
        the core's."""
        if kwargs.get("verify", True) is False:
            raise ConfigurationError("TLS certificate verification cannot be turned off.")
        kwargs.setdefault("verify", True)
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        # A redirect could lead a password, a token or a trusted answer (discovery, the
        # profile) to a URL the transport policy never saw, such as plain http elsewhere.
        kwargs["allow_redirects"] = False
        if urlsplit(url).scheme == "http":
            # Plain http is allowed only because loopback never crosses a network; an
            # http_proxy/ALL_PROXY from the environment would carry it (password included)
            # to the proxy in clear text.
            kwargs["proxies"] = {"http": None, "https": None, "all": None}
        origin = _origin(url)
        try:
            response = self._http.request(method, url, **kwargs)
        except requests.Timeout as exc:
            raise ServerUnreachable(
                f"The server at {origin} did not answer in time.", url=origin
            ) from exc
        except requests.exceptions.SSLError as exc:
            raise ServerUnreachable(
                f"The server at {origin} could not prove its identity (TLS certificate "
                "verification failed).",
                url=origin,
            ) from exc
        except requests.ConnectionError as exc:
            raise ServerUnreachable(
                f"Could not connect to the server at {origin}.", url=origin
            ) from exc
        except requests.RequestException as exc:
            raise ServerError(f"The request to {origin} failed ({type(exc).__name__}).") from exc
        if response.is_redirect:
            response.close()
            raise ServerError(
                f"The server at {origin} answered with a redirect (HTTP {response.status_code}), "
                "which jwt-desktop does not follow: check the server URL.",
                status=response.status_code,
            )
        return response

    @staticmethod
    def _notify(observers: list[Callable[..., None]], *args: Any) -> None:
        for observer in list(observers):
            try:
                observer(*args)
            except Exception:
                logger.exception("An observer failed")


# -- helpers -------------------------------------------------------------------------------------

_AUTH_PARAM = re.compile(r'([A-Za-z_][\w-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')


def _bearer_error(response: requests.Response) -> tuple[str | None, str | None]:
    """``error`` and ``error_description`` of a ``WWW-Authenticate: Bearer`` header (RFC 6750)."""
    header = response.headers.get("WWW-Authenticate", "")
    if not header.lower().startswith("bearer"):
        return None, None
    params = {}
    for name, raw in _AUTH_PARAM.findall(header[len("bearer") :]):
        value = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
        params[name.lower()] = value
    return params.get("error"), params.get("error_description")


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _oauth_error(data: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """RFC 6749 §5.2 ``error``/``error_description``, whatever the status code was."""
    if data is None:
        return None, None
    error = data.get("error")
    description = data.get("error_description")
    return (
        error if isinstance(error, str) and error else None,
        description if isinstance(description, str) and description else None,
    )


def _reason(description: str) -> str:
    """A server's error description made fit for a sentence: one line, bounded, no end dot."""
    text = " ".join(description.split())[:_MAX_REASON_CHARS]
    return text.rstrip(".")


def _retry_after(value: str | None) -> int | None:
    """Retry-After as seconds: a number of seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0, round((when - datetime.now(timezone.utc)).total_seconds()))


def _server_failure(status: int) -> ServerError:
    return ServerError(f"The server failed (HTTP {status}). Try again later.", status=status)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _scope_for(endpoints: Endpoints) -> str | None:
    # sessions:admin only where listed: a server grants it to admins and narrows it away for
    # others (the bundled one does), and a provider that does not know it is never asked.
    wanted: tuple[str, ...] = ("openid", "profile", "email", "groups")
    if endpoints.scopes_supported is None:
        return " ".join(wanted)
    wanted += ("sessions:admin",)
    return " ".join(s for s in wanted if s in endpoints.scopes_supported) or None


def _unprobed_status(store: TokenStore, in_store: bool) -> StorageStatus:
    """A stand-in until the store has been probed (``status()`` must not do I/O)."""
    cached = getattr(store, "cached_status", None)
    if callable(cached):
        result = cached()
        if isinstance(result, StorageStatus):
            return result
    if in_store:
        return StorageStatus(persistent=True, backend=type(store).__name__)
    return StorageStatus(
        persistent=False,
        backend=type(store).__name__,
        reason="The keyring has not been checked yet.",
    )
