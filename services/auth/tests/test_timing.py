"""An unknown user and a wrong password cost the same time (both verify an argon2id hash).

Statistical and tolerant, because the machine is shared: interleaved samples, medians compared.
Without the dummy hash the unknown-user path would take microseconds against tens of milliseconds.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from fastapi.testclient import TestClient

from modelberth_auth.app import create_app

SAMPLES = 12
TOLERANCE = 0.5
"""|median(unknown) - median(wrong)| must stay below this fraction of median(wrong)."""


def test_unknown_user_and_wrong_password_take_the_same_time(auth_env: Any) -> None:
    settings = auth_env.settings(login_max_failures=1000)
    with TestClient(create_app(settings)) as http:
        http.post("/auth/login", json={"username": "warmup", "password": "warm-up-pass"})
        unknown: list[float] = []
        wrong: list[float] = []
        for i in range(SAMPLES):
            for username, bucket in ((f"nobody{i}", unknown), (auth_env.username, wrong)):
                start = time.perf_counter()
                response = http.post(
                    "/auth/login", json={"username": username, "password": "not-the-password"}
                )
                bucket.append(time.perf_counter() - start)
                assert response.status_code == 401
    median_unknown, median_wrong = statistics.median(unknown), statistics.median(wrong)
    assert median_wrong > 0.002, "argon2id should take milliseconds; is the dummy hash being used at all?"
    assert abs(median_unknown - median_wrong) < TOLERANCE * median_wrong, (median_unknown, median_wrong)
