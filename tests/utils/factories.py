"""Factories for tests: keys, tasks and cases through the HTTP API."""

from __future__ import annotations

import random
from typing import Any

from fastapi.testclient import TestClient

ADMIN_KEY = "tl_test_admin_key"

CLAIMS_FEATURES = {"amount": "number", "country": "category", "note": "text", "vip": "boolean"}


def claims_case(rng: random.Random) -> tuple[dict[str, Any], str]:
    """A synthetic claim and its true label (large foreign claims get rejected)."""
    amount = round(rng.uniform(10, 20_000), 2)
    country = rng.choice(["fr", "de", "es", "it"])
    vip = rng.random() < 0.3
    reject = (amount > 9_000 and country in ("es", "it")) or (amount > 15_000 and not vip)
    note = rng.choice(["windscreen repair", "stolen phone abroad", "water damage in kitchen"])
    return {"amount": amount, "country": country, "note": note, "vip": vip}, (
        "reject" if reject else "approve"
    )


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Api:
    """Thin helpers over the test client, authenticated per role."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.admin = auth(ADMIN_KEY)
        self._keys: dict[str, str] = {}

    def key(self, role: str, name: str | None = None) -> str:
        name = name or f"test-{role}"
        if name not in self._keys:
            response = self.client.post(
                "/v1/keys", json={"name": name, "role": role}, headers=self.admin
            )
            assert response.status_code == 201, response.text
            self._keys[name] = response.json()["key"]
        return self._keys[name]

    def as_(self, role: str, name: str | None = None) -> dict[str, str]:
        return auth(self.key(role, name))

    def create_task(self, name: str = "claims", **settings: Any) -> dict[str, Any]:
        body = {
            "name": name,
            "labels": ["approve", "reject"],
            "features": CLAIMS_FEATURES,
            "min_labels": 10,
            "threshold_policy": "fixed",
            **settings,
        }
        response = self.client.post("/v1/tasks", json=body, headers=self.admin)
        assert response.status_code == 201, response.text
        return response.json()

    def send(self, task: str, features: dict, external_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"features": features}
        if external_id is not None:
            body["external_id"] = external_id
        response = self.client.post(
            f"/v1/tasks/{task}/cases", json=body, headers=self.as_("service")
        )
        assert response.status_code in (200, 201), response.text
        return response.json()

    def claim(self, task: str, reviewer: str = "test-reviewer") -> dict[str, Any] | None:
        response = self.client.post(
            f"/v1/tasks/{task}/queue/claim", headers=self.as_("reviewer", reviewer)
        )
        if response.status_code == 204:
            return None
        assert response.status_code == 200, response.text
        return response.json()

    def label(self, claim: dict[str, Any], label: str, reviewer: str = "test-reviewer"):
        return self.client.post(
            f"/v1/cases/{claim['case']['id']}/label",
            json={"label": label, "lease_id": claim["lease_id"]},
            headers=self.as_("reviewer", reviewer),
        )

    def release(
        self, claim: dict[str, Any], reviewer: str = "test-reviewer", lease_id: str | None = None
    ):
        """Give a claimed case back (under ``lease_id``, by default the claim's own)."""
        return self.client.post(
            f"/v1/cases/{claim['case']['id']}/release",
            json={"lease_id": lease_id or claim["lease_id"]},
            headers=self.as_("reviewer", reviewer),
        )

    def _send_batch(self, task: str, cases: list[tuple[dict[str, Any], str]]) -> dict[str, str]:
        """Send cases in one batch; their true labels by case id."""
        response = self.client.post(
            f"/v1/tasks/{task}/cases/batch",
            json={"cases": [{"features": x} for x, _ in cases]},
            headers=self.as_("service"),
        )
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        return {r["id"]: y for r, (_, y) in zip(results, cases, strict=True)}

    def teach(self, task: str, n: int, seed: int = 0) -> None:
        """Send ``n`` synthetic claims (in one batch: a call a case made the suite's
        PostgreSQL phase minutes slower) and label every case that reaches the queue."""
        rng = random.Random(seed)
        cases = [claims_case(rng) for _ in range(n)]
        truth = self._send_batch(task, cases) if cases else {}
        while (claim := self.claim(task)) is not None:
            case_id = claim["case"]["id"]
            response = self.label(claim, truth.get(case_id, "approve"))
            assert response.status_code == 200, response.text
