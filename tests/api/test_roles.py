"""Each role may do what the contract grants and nothing else."""

import pytest

ROUTES = [
    # method, path, body, roles allowed
    ("post", "/v1/keys", {"name": "n", "role": "service"}, {"admin"}),
    ("get", "/v1/keys", None, {"admin"}),
    ("post", "/v1/tasks", {"name": "t2", "labels": ["a", "b"]}, {"admin"}),
    ("get", "/v1/tasks", None, {"admin", "service", "reviewer", "analyst"}),
    ("get", "/v1/tasks/claims", None, {"admin", "service", "reviewer", "analyst"}),
    ("patch", "/v1/tasks/claims", {"audit_rate": 0.1}, {"admin"}),
    (
        "post",
        "/v1/tasks/claims/cases",
        {"features": {"amount": 1, "country": "fr", "note": "x", "vip": True}},
        {"admin", "service"},
    ),
    (
        "post",
        "/v1/tasks/claims/predict",
        {"features": {"amount": 1, "country": "fr", "note": "x", "vip": True}},
        {"admin", "service"},
    ),
    ("post", "/v1/tasks/claims/queue/claim", None, {"admin", "reviewer"}),
    ("get", "/v1/tasks/claims/metrics", None, {"admin", "reviewer", "analyst"}),
    ("get", "/v1/tasks/claims/curve", None, {"admin", "reviewer", "analyst"}),
]


@pytest.mark.parametrize("role", ["admin", "service", "reviewer", "analyst"])
@pytest.mark.parametrize(("method", "path", "body", "allowed"), ROUTES)
def test_role_matrix(api, role, method, path, body, allowed):
    api.create_task()
    headers = api.admin if role == "admin" else api.as_(role)
    response = getattr(api.client, method)(
        path, headers=headers, **({"json": body} if body is not None else {})
    )
    if role in allowed:
        assert response.status_code < 400, (role, path, response.text)
    else:
        assert response.status_code == 403, (role, path, response.text)
