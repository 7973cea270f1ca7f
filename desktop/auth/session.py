"""The authorized session: sign in (with any grant), restore, transparent refresh, sign out.

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
  keyed by issuer and account, and the stored session re-read inside it: if another process
  rotated it meanwhile, the stored (unspent) refresh token is used instead of ours (already
  spent), so the server never sees the same refresh token twice, which it would treat as theft;
  and when the access token it stored is still valid, that one is adopted with no request.

A refresh whose answer was lost (the connection broke or timed out after the request was sent)
is sent once more with the same token: a server with a reuse grace answers it, a strict one
ends the session as it would for any reuse.

The stored session's protocol (the marker that proves which refresh token is current, every
write under the lock, the write-back) is :mod:`desktop.auth.persistence`; the DPoP key and
what an authorized request carries, :mod:`desktop.auth.credentials`.

The session does not know which grant made its tokens (:mod:`desktop.auth.grants`). An ID token
a grant received is handed to the ``id_token_validator`` before anything of it is used; without
a validator it is ignored.

Observers (``on_refreshed``, ``on_session_ended``) are plain lists of callables, called on the
thread that did the work, after every lock is released; the GUI re-emits them as Qt signals.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import requests

from desktop.auth import messages, oauth
from desktop.auth.credentials import Credential, SessionKeys, check_binding
from desktop.auth.dpop import DPoPSigner
from desktop.auth.errors import (
    AccessDenied,
    AuthError,
    ConfigurationError,
    DPoPRefused,
    InvalidDPoPKey,
    NotSignedIn,
    ServerError,
    ServerUnreachable,
    SessionEnded,
)
from desktop.auth.grants import Grant, GrantContext, Progress, TokenResponse, ignore_progress
from desktop.auth.lock import ENDED, SIGNED_OUT, SessionLock
from desktop.auth.messages import Revocation
from desktop.auth.oauth import ServerMetadata
from desktop.auth.persistence import Kept, LocalCopy, SessionStorage, effective_storage
from desktop.auth.store import StorageStatus, StoredSession, TokenStore
from desktop.auth.tokens import TokenSet
from desktop.auth.transport import Transport, json_object, normalize_server_url

__all__ = ["AuthClient", "IdTokenValidator", "SessionStatus", "SignInResult"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionStatus:
    """A snapshot of the session for display; contains no secret."""

    signed_in: bool
    username: str | None  # the account's name (typed, or from the tokens)
    server_url: str
    access_expires_in: float | None
    access_lifetime: float | None
    refresh_count: int
    last_refreshed: datetime | None
    storage: StorageStatus
    remembered: bool
    # Why the stored session lags behind this one (a keyring write failed and is retried), or
    # why a keyring entry could not be deleted; None when the keyring holds what it should.
    unsaved: str | None = None
    # The tokens are DPoP-bound (RFC 9449): useless without this device's key.
    bound: bool = False


@dataclass(frozen=True)
class SignInResult:
    """A sign-in that succeeded: the session is live (and stored, if asked and possible).

    The profile is a second step: ``profile`` is the userinfo claims, or ``None`` with
    ``profile_error`` saying why it could not be fetched (the person is signed in all the same;
    :meth:`AuthClient.profile` may be retried).
    """

    status: SessionStatus
    profile: dict[str, Any] | None
    profile_error: Exception | None = None


class IdTokenValidator(Protocol):
    """Validates an ID token (OIDC Core §3.1.3.7) and returns its claims, or raises an
    :class:`AuthError`. ``desktop/auth/idtoken.py`` provides it; the session only calls it."""

    def __call__(
        self,
        id_token: str,
        *,
        metadata: ServerMetadata,
        transport: Transport,
        client_id: str,
        nonce: str | None,
        access_token: str,
    ) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class _Refreshed:
    """What one refresh (or adoption of another process's refresh) produced."""

    tokens: TokenSet
    dpop: DPoPSigner | None  # the key the tokens are bound to (None: Bearer)
    kept: Kept
    requested: bool  # a request was made (False: another process's tokens were adopted)


@dataclass
class _State:
    """The mutable session, guarded by ``AuthClient._state_lock``."""

    username: str | None = None
    tokens: TokenSet | None = None  # None: no usable access token yet
    refresh_token: str | None = None
    dpop: DPoPSigner | None = None  # the session's DPoP key: None for a Bearer session
    subject: str | None = None  # the validated ID token's sub: userinfo's must match
    in_store: bool = False  # the session is (also) kept in the store
    storage_reason: str | None = None  # why it is not in the store, when that was not chosen
    stored_generation: int | None = None  # the marker generation of our tokens (lock.Marker)
    unsaved: str | None = None  # a keyring write that failed and awaits write_back()
    generation: int = 0  # bumped whenever the tokens change
    attempts: int = 0  # refresh attempts made, successful or not
    last_failure: tuple[int, AuthError] | None = None  # (attempt, error) of a failed refresh
    refresh_count: int = 0
    last_refreshed: datetime | None = None


class AuthClient:
    """Signs a person in against an OAuth 2.0 / OpenID Connect server and keeps them signed in.

    Every public method is thread-safe. All but :meth:`status` do network or keyring I/O and
    must be called off a GUI thread.

    ``lock_dir`` is where the cross-process lock lives (``None``: the state directory,
    :func:`desktop.config.state_dir`); every process sharing a stored session must use the same
    one, which the GUI and the CLI do. ``clock`` is monotonic (expiry within this process),
    ``wall_clock`` the epoch time the stored session's expiry is written in.

    Observers: ``on_refreshed: list[Callable[[], None]]`` (after every successful refresh) and
    ``on_session_ended: list[Callable[[SessionEnded], None]]`` (the refresh token was refused:
    expired, revoked or reused; also when a restore finds the stored session dead).

    ``write_back``: a long-lived process (the GUI) may refresh with its own copy while the
    keyring cannot be read, when the marker proves that copy current, and writes the stored
    session back later (:meth:`write_back`). A short-lived one (the CLI) must not: its copy
    dies with it, so it stops with the keyring's sentence instead.
    """

    def __init__(
        self,
        server_url: str,
        *,
        client_id: str = "jwt-desktop",
        store: TokenStore,
        http: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        lock_dir: Path | None = None,
        timeout: float = 10.0,
        leeway: float = 30.0,
        id_token_validator: IdTokenValidator | None = None,
        write_back: bool = True,
    ) -> None:
        self.server_url = normalize_server_url(server_url)
        self.client_id = client_id
        self.transport = Transport(http, timeout=timeout)
        self._clock = clock
        self._storage = SessionStorage(
            store,
            SessionLock(lock_dir, timeout=3 * timeout + 15),
            issuer=self.server_url,
            write_back=write_back,
            clock=clock,
            wall_clock=wall_clock,
            revoke=self._revoke_stored,
        )
        self._keys = SessionKeys(clock=wall_clock)
        self._leeway = leeway
        self._validate_id_token = id_token_validator
        self._state = _State()
        self._state_lock = threading.Lock()  # short: guards _state, never held during I/O
        self._refresh_lock = threading.Lock()  # long: one refresh/sign-in/sign-out at a time
        self._metadata_lock = threading.Lock()
        self._metadata: ServerMetadata | None = None
        self.on_refreshed: list[Callable[[], None]] = []
        self.on_session_ended: list[Callable[[SessionEnded], None]] = []

    # -- public API ------------------------------------------------------------------------------

    def sign_in(
        self,
        grant: Grant,
        *,
        remember: bool,
        cancel: threading.Event | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> SignInResult:
        """Sign in with ``grant``; keep the session (in the keyring only if ``remember`` and
        possible); then fetch the profile.

        Raises when no session was started. Once the tokens are kept, it returns: a failed
        profile fetch is reported in the result, not raised.
        """
        metadata = self.metadata()
        signer = self._keys.new(metadata)
        context = GrantContext(
            metadata=metadata,
            transport=self.transport,
            client_id=self.client_id,
            scope=oauth.requested_scope(metadata),
            clock=self._clock,
            cancel=cancel if cancel is not None else threading.Event(),
            progress=progress or ignore_progress,
            dpop=signer,
        )
        response = grant.obtain(context)
        tokens = response.tokens
        # The answer's token_type decides (RFC 9449 §5): Bearer tokens need no key.
        signer = signer if tokens.bound else None
        if tokens.refresh_token is None:
            raise ServerError(messages.NO_REFRESH_TOKEN)
        profile: dict[str, Any] | None = None
        try:
            check_binding(tokens, signer)
            subject, name = self._identify(response, metadata)
            if response.username:
                account = response.username
            elif name:
                account = name
            else:
                # No typed name and no ID token to name the account: ask userinfo (the
                # profile is fetched anyway, so this costs no extra request).
                profile = self._userinfo(metadata, Credential(tokens, signer), subject)
                account = oauth.account_name(profile)
        except AuthError:
            # Tokens we will not use (a bad ID token, no account name) must not stay alive.
            self._revoke(tokens.refresh_token, signer)
            raise
        with self._refresh_lock:
            kept = self._storage.keep_new(account, tokens, signer, remember)
            with self._state_lock:
                self._state = _State(
                    username=account,
                    tokens=tokens,
                    refresh_token=tokens.refresh_token,
                    dpop=signer,
                    subject=subject,
                    in_store=kept.in_store,
                    storage_reason=kept.reason,
                    stored_generation=kept.generation,
                    unsaved=kept.unsaved,
                    generation=self._state.generation + 1,
                    attempts=self._state.attempts,
                )
        logger.info(
            "Signed in as %s at %s with %s (%s, stored: %s)",
            account,
            self.server_url,
            grant.grant_type,
            tokens.token_type,
            kept.in_store,
        )
        self._storage.probe()
        error: Exception | None = None
        if profile is None:
            try:
                profile = self.profile()
            except Exception as exc:  # reported as such: the sign-in itself succeeded
                if not isinstance(exc, AuthError):
                    logger.exception("The profile fetch after sign-in failed")
                error = exc
        return SignInResult(status=self.status(), profile=profile, profile_error=error)

    def load_stored(self, username: str) -> bool:
        """Adopt a stored session without contacting the server; its access token, while
        valid, serves the next requests (no refresh). Read under the session's lock, so that
        what is adopted is what the marker says is current.

        Returns False when nothing is stored, or when its tokens are DPoP-bound to a key that
        cannot be read (as good as no session). Raises :class:`KeyringUnavailable` when the
        keyring cannot be read or holds an out-of-date session (it is kept for later), and
        :class:`SessionEnded` when the current session was lost (see the marker).
        """
        with self._refresh_lock, self._storage.hold(username) as held:
            try:
                stored = self._storage.current(held, username, None)
            finally:
                self._storage.probe()
            if not isinstance(stored, StoredSession):  # None (no copy of ours was offered)
                logger.info("No stored session for %s at %s", username, self.server_url)
                return False
            try:
                signer = self._keys.from_stored(stored)
            except InvalidDPoPKey as exc:
                logger.warning("Cannot use the stored session: %s", exc)
                return False
            with self._state_lock:
                self._state = _State(
                    username=username,
                    tokens=self._storage.tokens_from(stored),
                    refresh_token=stored.refresh_token,
                    dpop=signer,
                    in_store=True,
                    stored_generation=stored.generation,
                    generation=self._state.generation + 1,
                    attempts=self._state.attempts,
                )
        logger.info("Loaded the stored session of %s at %s", username, self.server_url)
        return True

    def restore(self, username: str) -> dict[str, Any] | None:
        """Silent sign-in from a stored session, then the profile.

        ``None`` when nothing is stored; :class:`KeyringUnavailable` when the keyring cannot
        be read (nothing is lost: try again once it is unlocked). :class:`SessionEnded` when the
        stored session is dead (it is deleted). Network errors leave the session loaded, so a
        later call can retry.
        """
        if not self.load_stored(username):
            return None
        # The profile request proves the session at start-up, where the sign-in dialog is
        # expected, not in the middle of the first action: a stored access token still valid
        # is used as is (a revoked one gets a 401, then the refresh ends the session).
        with self._state_lock:
            generation, attempts = self._state.generation, self._state.attempts
            usable = self._state.tokens is not None and not self._state.tokens.is_stale(
                self._clock(), self._leeway
            )
        if not usable:
            self._refresh(generation, attempts)
        return self.profile()

    def profile(self) -> dict[str, Any]:
        """The userinfo claims, fetched through the authorized session."""
        endpoint = self.metadata().userinfo_endpoint
        if endpoint is None:
            raise ConfigurationError(messages.NO_USERINFO)
        response = self.request("GET", endpoint, headers={"Accept": "application/json"})
        with self._state_lock:
            subject = self._state.subject
        return oauth.userinfo_claims(response, subject=subject)

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """An authorized request (``url`` absolute, or a path on the server).

        Refresh early if stale; send; on 401 ``invalid_token`` refresh once and resend once.
        Returns the response for any status but redirects (never followed), 403, 5xx and a
        401 refusing the DPoP proof (:class:`DPoPRefused`); the caller closes it (or reads it).
        A request body is sent twice when a retry happens, so it must not be a one-shot stream.
        """
        if url.startswith("/"):
            url = self.server_url + url
        credential, generation, attempts = self._access_token()
        # A DPoP nonce the resource asks for is sent inside Credential.send (once): it is not
        # a rejection of the token, so it costs no refresh.
        response = credential.send(self.transport, method, url, **kwargs)
        if response.status_code == 401 and oauth.bearer_error(response)[0] == "invalid_token":
            response.close()
            logger.info("Access token rejected (invalid_token): refreshing once and resending")
            credential, _, _ = self._refresh(generation, attempts, rejected=credential.access_token)
            response = credential.send(self.transport, method, url, **kwargs)
            if response.status_code == 401 and oauth.bearer_error(response)[0] == "invalid_token":
                response.close()
                raise ServerError(messages.REJECTED_FRESH_TOKEN, status=401)
        if response.status_code == 401:
            error, description = oauth.bearer_error(response)
            if error in oauth.DPOP_ERRORS:
                response.close()
                signer = credential.dpop
                offset = signer.clock_offset(response) if signer is not None else None
                raise DPoPRefused(
                    messages.dpop_refused(error, description, offset),
                    error=error,
                    description=description,
                    status=401,
                )
        if response.status_code == 403:
            error, description = oauth.bearer_error(response)
            if error is None:
                error, description = oauth.oauth_error(json_object(response))
            response.close()
            raise AccessDenied(
                messages.access_denied(description),
                error=error or "insufficient_scope",
                description=description,
                status=403,
            )
        if response.status_code >= 500:
            response.close()
            raise oauth.server_failure(response.status_code)
        return response

    def sign_out(self) -> Revocation:
        """Revoke the refresh token at the server (RFC 7009), then forget the session locally
        whatever the server said; the result says what the server did.

        Raises :class:`KeyringUnavailable` or :class:`LockTimeout` (forgetting nothing) when
        the session is stored but the current refresh token cannot be known (the keyring
        cannot be read and our copy is not proven current, or the lock is held too long).
        A keyring entry that could not be deleted afterwards is reported in
        ``status().unsaved`` and deleted by a later :meth:`write_back`.
        """
        outcome = Revocation.REVOKED
        unsaved: str | None = None
        with self._refresh_lock:
            with self._state_lock:
                username = self._state.username
                token = self._state.refresh_token
                signer = self._state.dpop
                in_store = self._state.in_store
                mine = self._mine(self._state)
            if username is None:
                return Revocation.REVOKED
            # A lock held too long (LockTimeout) raises too, forgetting nothing: deleting the
            # entry without the lock would race the holder's write of a rotation.
            with self._storage.locked(username, in_store) as held:
                if held is not None:
                    try:
                        stored = self._storage.current(held, username, mine)
                    except SessionEnded:
                        stored = None  # already over: nothing left to revoke
                    token = stored.refresh_token if stored is not None else None
                    if stored is not None:
                        # The stored token (maybe another process's rotation) goes with its key.
                        signer = self._keys.of_current(stored, mine)
                outcome = self._revoke(token, signer) if token else Revocation.REVOKED
                if held is not None:
                    unsaved = self._storage.remove(held, username, SIGNED_OUT)
            self._clear_session(unsaved=unsaved)
        logger.info("Signed out %s (revocation: %s)", username, outcome.value)
        return outcome

    def write_back(self) -> bool:
        """Replay the keyring writes that failed (a refreshed session not saved, an entry not
        deleted), under the session's lock. True when nothing is pending any more. The GUI
        calls it from a timer while ``status().unsaved`` is set; the CLI before it exits."""
        if not self._storage.flush_pending():
            return False
        with self._state_lock:
            self._state.unsaved = None
        self._storage.probe()
        return True

    def status(self) -> SessionStatus:
        """A snapshot for display. No network; the storage part is the last probed one."""
        with self._state_lock:
            state = self._state
            tokens = state.tokens
            now = self._clock()
            storage = self._effective_storage(self._storage.last_status(state.in_store))
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
                unsaved=state.unsaved,
                bound=tokens.bound if tokens else state.dpop is not None,
            )

    def storage_status(self) -> StorageStatus:
        """Where the session is kept (or would be); probes the keyring once."""
        store_status = self._storage.probe()
        with self._state_lock:
            return self._effective_storage(store_status)

    def current_tokens(self) -> TokenSet | None:
        """The tokens in use, for display (the token inspector): no I/O, never logged. The
        caller must not store or send them; the refresh token in it is not for display."""
        with self._state_lock:
            return self._state.tokens

    def signing_keys(self) -> dict[str, Any]:
        """The server's published signing keys (its JWKS document), fetched anew."""
        uri = self.metadata().jwks_uri
        if uri is None:
            raise ConfigurationError(messages.NO_JWKS)
        response = self.transport.request(
            "GET", uri, what="The key set URL", headers={"Accept": "application/json"}
        )
        with response:
            if response.status_code != 200:
                raise oauth.server_failure(response.status_code)
            document = json_object(response)
        if document is None:
            raise ServerError(messages.JWKS_NOT_JSON)
        return document

    def metadata(self) -> ServerMetadata:
        """The server's metadata (OIDC discovery + RFC 8414), fetched once, then cached."""
        with self._metadata_lock:
            if self._metadata is None:
                self._metadata = oauth.discover(self.transport, self.server_url)
            return self._metadata

    def close(self) -> None:
        """Close the HTTP session (only when this client created it)."""
        self.transport.close()

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

    # -- identity -------------------------------------------------------------------------------

    def _identify(
        self, response: TokenResponse, metadata: ServerMetadata
    ) -> tuple[str | None, str | None]:
        """(sub, account name) from the ID token, once validated; (None, None) without one.

        This is where ID-token validation plugs in: nothing of an ID token is used unless
        the validator accepted it.
        """
        id_token = response.tokens.id_token
        if id_token is None or self._validate_id_token is None:
            return None, None
        claims = self._validate_id_token(
            id_token,
            metadata=metadata,
            transport=self.transport,
            client_id=self.client_id,
            nonce=response.nonce,
            access_token=response.tokens.access_token,
        )
        sub = claims.get("sub")
        subject = sub if isinstance(sub, str) and sub else None
        name = claims.get("preferred_username")
        return subject, name if isinstance(name, str) and name else subject

    def _userinfo(
        self, metadata: ServerMetadata, credential: Credential, subject: str | None
    ) -> dict[str, Any]:
        if metadata.userinfo_endpoint is None:
            raise ConfigurationError(messages.NO_USERINFO)
        headers = {"Accept": "application/json"}
        response = credential.send(
            self.transport, "GET", metadata.userinfo_endpoint, headers=headers
        )
        return oauth.userinfo_claims(response, subject=subject)

    # -- refresh -------------------------------------------------------------------------------

    def _access_token(self) -> tuple[Credential, int, int]:
        """A usable access token, refreshing first if it is missing or stale."""
        with self._state_lock:
            state = self._state
            if state.username is None:
                raise NotSignedIn(messages.NOT_SIGNED_IN)
            generation, attempts = state.generation, state.attempts
            tokens = state.tokens
            if tokens is not None and not tokens.is_stale(self._clock(), self._leeway):
                return Credential(tokens, state.dpop), generation, attempts
        return self._refresh(generation, attempts)

    def _refresh(
        self, seen_generation: int, seen_attempts: int, *, rejected: str | None = None
    ) -> tuple[Credential, int, int]:
        """Refresh unless another thread already did since the caller looked (single flight).

        ``seen_*`` are what the caller read before deciding to refresh. A newer generation
        means another thread refreshed meanwhile: reuse its tokens. A failed attempt made
        meanwhile is re-raised rather than repeated, so 50 waiting callers against a dead
        server fail together after one timeout instead of one after another. ``rejected`` is
        an access token the server just refused: never adopted from the store.
        """
        ended: SessionEnded | None = None
        with self._refresh_lock:
            with self._state_lock:
                state = self._state
                if state.generation != seen_generation and state.tokens is not None:
                    return Credential(state.tokens, state.dpop), state.generation, state.attempts
                failure = state.last_failure
                if state.attempts != seen_attempts and failure and failure[0] == state.attempts:
                    raise failure[1]
                if state.username is None:
                    raise NotSignedIn(messages.NOT_SIGNED_IN)
                state.attempts += 1
                attempt = state.attempts
                username, in_store, mine = state.username, state.in_store, self._mine(state)
                current = rejected or (state.tokens.access_token if state.tokens else None)
            logger.debug("Refreshing the access token (attempt %d)", attempt)
            try:
                done = self._refresh_tokens(username, mine, in_store, current)
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
                result = self._keep_refreshed(done)
        if ended is not None:
            self._notify(self.on_session_ended, ended)
            raise ended
        if done.requested:
            self._notify(self.on_refreshed)
        return result

    def _keep_refreshed(self, done: _Refreshed) -> tuple[Credential, int, int]:
        """Make a refresh's result the session (under _refresh_lock)."""
        with self._state_lock:
            state = self._state
            tokens = done.tokens
            state.tokens = tokens
            state.refresh_token = tokens.refresh_token
            state.dpop = done.dpop
            kept = done.kept
            if state.in_store and not kept.in_store:
                state.storage_reason = kept.reason
            state.in_store = kept.in_store
            state.stored_generation = kept.generation
            state.unsaved = kept.unsaved
            state.generation += 1
            if done.requested:
                state.refresh_count += 1
                state.last_refreshed = datetime.now(timezone.utc)
            state.last_failure = None
            return Credential(tokens, done.dpop), state.generation, state.attempts

    def _refresh_tokens(
        self, username: str, mine: LocalCopy | None, in_store: bool, current: str | None
    ) -> _Refreshed:
        """One refresh, under the cross-process lock when the session is stored.

        ``mine`` is this process's refresh token with its marker generation and key; ``current``
        the access token in use (never adopted back from the store).
        """
        with self._storage.locked(username, in_store) as held:
            generation = mine.generation if mine is not None else None
            signer = mine.dpop if mine is not None else None
            if held is not None:
                stored = self._storage.current(held, username, mine)
                if stored is None:
                    why = held.marker.state if held.marker is not None else None
                    raise SessionEnded(
                        messages.ENDED_ELSEWHERE if why == SIGNED_OUT else messages.ENDED,
                        error="invalid_grant",
                        description="the stored session was removed",
                    )
                generation = stored.generation
                # Its key is the one its tokens are bound to (another process's sign-in made a
                # new one); ours when the stored token is ours.
                signer = self._keys.of_current(stored, mine)
                if isinstance(stored, StoredSession) and (
                    mine is None or stored.refresh_token != mine.refresh_token
                ):
                    # Another process rotated it: ours is spent, the stored one is not; its
                    # access token may still be good, sparing a refresh altogether.
                    adopted = self._storage.tokens_from(stored)
                    if (
                        adopted is not None
                        and adopted.access_token != current
                        and not adopted.is_stale(self._clock(), self._leeway)
                    ):
                        logger.info("Another process refreshed this session; using its tokens")
                        kept = Kept(True, generation=generation)
                        return _Refreshed(adopted, signer, kept, requested=False)
                refresh_token: str | None = stored.refresh_token
            else:
                refresh_token = mine.refresh_token if mine is not None else None
            if refresh_token is None:
                raise SessionEnded(messages.ENDED, error="invalid_grant")
            try:
                data = self._refresh_grant(refresh_token, signer)
            except SessionEnded:
                if held is not None:
                    self._storage.remove(held, username, ENDED)
                raise
            tokens = TokenSet.from_response(
                data, now=self._clock(), previous_refresh_token=refresh_token
            )
            check_binding(tokens, signer)
            if held is not None:
                kept = self._storage.keep_rotation(held, username, tokens, signer)
            else:
                kept = Kept(in_store, generation=generation)
            logger.info(
                "Access token refreshed (%s, lifetime %s s)", tokens.token_type, tokens.lifetime
            )
            return _Refreshed(tokens, signer, kept, requested=True)

    def _refresh_grant(self, refresh_token: str, signer: DPoPSigner | None) -> dict[str, Any]:
        """The refresh request; sent once more when its answer was lost (see the module
        docstring): with the same token, since the one the lost answer carried is unknown, and
        for a bound session with a fresh proof (each ``send`` signs a new ``jti``: a proof is
        single use, RFC 9449 §11.1)."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        try:
            return oauth.token_request(
                self.transport, self.metadata(), form, client_id=self.client_id, dpop=signer
            )
        except ServerUnreachable as exc:
            if not exc.sent:
                raise
            logger.warning("The refresh answer was lost; sending the refresh once more")
        return oauth.token_request(
            self.transport, self.metadata(), form, client_id=self.client_id, dpop=signer
        )

    # -- storage --------------------------------------------------------------------------------

    @staticmethod
    def _mine(state: _State) -> LocalCopy | None:
        """This process's refresh token with its marker generation and key (call under
        _state_lock)."""
        if state.refresh_token is None:
            return None
        return LocalCopy(state.refresh_token, state.stored_generation, state.dpop)

    def _revoke(self, token: str, signer: DPoPSigner | None) -> Revocation:
        try:
            metadata = self.metadata()
        except AuthError as exc:
            logger.warning("Could not revoke the session at the server: %s", exc)
            return Revocation.NOT_CONFIRMED
        return oauth.revoke(self.transport, metadata, token, client_id=self.client_id, dpop=signer)

    def _revoke_stored(self, stored: StoredSession) -> Revocation:
        return self._revoke(stored.refresh_token, self._keys.of_stored(stored))

    def _clear_session(
        self, failure: tuple[int, AuthError] | None = None, unsaved: str | None = None
    ) -> None:
        with self._state_lock:
            self._state = _State(
                generation=self._state.generation + 1,
                attempts=self._state.attempts,
                last_failure=failure,
                unsaved=unsaved,
            )

    def _effective_storage(self, store_status: StorageStatus) -> StorageStatus:
        """Where this session is kept (call under _state_lock)."""
        state = self._state
        return effective_storage(
            store_status,
            signed_in=state.username is not None,
            in_store=state.in_store,
            reason=state.storage_reason,
        )

    # -- observers ------------------------------------------------------------------------------

    @staticmethod
    def _notify(observers: list[Callable[..., None]], *args: Any) -> None:
        for observer in list(observers):
            try:
                observer(*args)
            except Exception:
                logger.exception("An observer failed")
