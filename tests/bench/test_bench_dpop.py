"""Benchmark of the client's DPoP proof creation (on demand: ``python -m pytest tests/bench -s``).

Target (issue 8): under 0.5 ms per proof. The baseline, measured in the same run and
interleaved so both see the same machine load, is PyJWT signing a bare ES256 JWT with the same
key and the same claims: the ratio says what our proof costs over "just an ES256 signature".
"""

from __future__ import annotations

import secrets
import statistics
import time

import jwt
import pytest

from desktop.auth.dpop import DPoPKey, normalise_htu

pytestmark = pytest.mark.bench

ROUNDS = 2000
BATCH = 20
URL = "https://server.example.com:443/userinfo?x=1"
ACCESS = "a" * 800  # about the size of an RS256 access token with groups


def _per_call(samples: list[float]) -> float:
    return statistics.median(samples) / BATCH


def test_proof_creation_time() -> None:
    key = DPoPKey.generate()
    private = key._key  # the baseline signs with the very same key
    htu = normalise_htu(URL)
    for _ in range(200):  # warm up
        key.proof("GET", URL, access_token=ACCESS)
        jwt.encode({"jti": "x"}, private, algorithm="ES256")
    ours: list[float] = []
    baseline: list[float] = []
    for _ in range(ROUNDS // BATCH):
        started = time.perf_counter()
        for _ in range(BATCH):
            key.proof("GET", URL, access_token=ACCESS)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(BATCH):
            jwt.encode(
                {
                    "jti": secrets.token_urlsafe(16),
                    "htm": "GET",
                    "htu": htu,
                    "iat": int(time.time()),
                },
                private,
                algorithm="ES256",
                headers={"typ": "dpop+jwt", "jwk": key.public_jwk},
            )
        baseline.append(time.perf_counter() - started)
    a, b = _per_call(ours), _per_call(baseline)
    print(
        f"\n[bench] DPoP proof creation: {a * 1e3:.3f} ms per proof (with ath), "
        f"PyJWT ES256 baseline {b * 1e3:.3f} ms, ratio {a / b:.2f}x"
    )
    assert a < 0.5e-3
