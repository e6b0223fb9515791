"""The OpenAPI document tells the truth (issue 13, point 13): each served model's own paths and request
schema, every status a route answers with its real error shape, and the token it needs. The integration
test runs schemathesis against it; these check its shape without a server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from modelberth_inference.validation import MAX_ABS_NUMBER

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def test_each_served_model_has_its_own_precise_paths(shared_client: TestClient) -> None:
    doc = shared_client.get("/openapi.json").json()
    paths = doc["paths"]
    assert "/v1/models/{name}/predict" not in paths
    predict = paths["/v1/models/iris/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]["schema"]
    wrapped, single = body["oneOf"]
    assert single["required"] == FEATURES
    assert single["additionalProperties"] is False
    assert single["properties"]["sepal_length"] == {
        "type": "number",
        "minimum": -MAX_ABS_NUMBER,
        "maximum": MAX_ABS_NUMBER,
    }
    assert wrapped["properties"]["instances"]["maxItems"] == 1000
    assert sorted(predict["responses"]) == [
        "200",
        "400",
        "401",
        "403",
        "404",
        "413",
        "415",
        "422",
        "429",
        "503",
        "504",
    ]
    assert predict["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    answer = predict["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["properties"]["predictions"]["items"] == {"enum": ["setosa", "versicolor", "virginica"]}
    version = shared_client.get("/readyz").json()["models"]["iris"]
    infer = paths["/v2/models/iris/versions/{version}/infer"]["post"]
    assert infer["parameters"][0]["schema"] == {"type": "string", "enum": [version, "champion", "latest"]}
    by_version = paths["/v1/models/iris/versions/{version}/predict"]["post"]
    assert by_version["requestBody"] == predict["requestBody"]
    assert by_version["parameters"][0]["schema"] == infer["parameters"][0]["schema"]
    assert "409" in by_version["responses"]
    assert infer["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorV2"
    }
    per_feature, one_tensor = infer["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
    inputs = per_feature["properties"]["inputs"]
    assert [item["properties"]["name"]["const"] for item in inputs["prefixItems"]] == FEATURES
    tensor = one_tensor["properties"]["inputs"]["prefixItems"][0]["properties"]
    assert tensor["shape"] == {"const": [1, len(FEATURES)]}
    assert tensor["name"]["not"] == {"enum": FEATURES}
    assert "429" in infer["responses"]
    assert infer["responses"]["429"]["headers"]["Retry-After"]["required"] is True


def test_error_shapes_and_tokens_are_documented(shared_client: TestClient) -> None:
    doc = shared_client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas, "FastAPI's 422 says detail is always an array; ours is not"
    assert schemas["Error"]["properties"]["detail"]["anyOf"][0] == {"type": "string"}
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    open_paths = {"/healthz", "/readyz", "/v2", "/v2/health/live", "/v2/health/ready"}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if path in open_paths:
                assert "security" not in operation, path
                continue
            assert operation["security"] == [{"bearer": []}], (method, path)
            assert "401" in operation["responses"], (method, path)
            assert operation["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True


def test_the_document_follows_the_served_versions(
    make_client: Callable[..., Any], tmp_path: Path, artifact_factory: Callable[..., Path], signer: Any
) -> None:
    model_dir = tmp_path / "models"
    with make_client(model_dir, ready=False) as client:
        empty = client.get("/openapi.json").json()["paths"]
        assert "/v1/models/{name}/predict" in empty  # nothing served: the templates
        first = artifact_factory(model_dir).name
        admin = signer.headers("models:admin")
        assert client.post("/v1/models/iris/reload", headers=admin).status_code == 200
        enum = client.get("/openapi.json").json()["paths"]["/v2/models/iris/versions/{version}"]["get"]
        assert enum["parameters"][0]["schema"]["enum"] == [first, "champion", "latest"]
        second = artifact_factory(model_dir).name
        assert client.post("/v1/models/iris/reload", headers=admin).status_code == 200
        enum = client.get("/openapi.json").json()["paths"]["/v2/models/iris/versions/{version}"]["get"]
        # Both versions take the same requests: one path, every version and alias that names one of them.
        assert enum["parameters"][0]["schema"]["enum"] == [first, second, "champion", "latest"]


def test_a_version_with_other_features_has_paths_of_its_own(
    make_client: Callable[..., Any],
    tmp_path: Path,
    artifact_factory: Callable[..., Path],
    variant_factory: Callable[..., Path],
) -> None:
    """A challenger trained without the petal features takes other requests: the document gives it its own
    paths, each with its own schema, instead of claiming the champion's body for it."""
    from sklearn.linear_model import LogisticRegression

    model_dir = tmp_path / "models"
    champion = artifact_factory(model_dir)
    sepals = ["sepal_length", "sepal_width"]
    challenger = variant_factory(model_dir, champion, LogisticRegression(), features=sepals).name
    with make_client(model_dir) as client:
        paths = client.get("/openapi.json").json()["paths"]
    shared = paths["/v1/models/iris/versions/{version}/predict"]["post"]
    assert shared["parameters"][0]["schema"]["enum"] == [champion.name, "champion"]
    for ref in (challenger, "challenger", "latest"):
        own = paths[f"/v1/models/iris/versions/{ref}/predict"]["post"]
        assert [p["name"] for p in own.get("parameters", [])] == []
        single = own["requestBody"]["content"]["application/json"]["schema"]["oneOf"][1]
        assert single["required"] == sepals
        infer = paths[f"/v2/models/iris/versions/{ref}/infer"]["post"]
        per_feature = infer["requestBody"]["content"]["application/json"]["schema"]["anyOf"][0]
        inputs = per_feature["properties"]["inputs"]
        assert [item["properties"]["name"]["const"] for item in inputs["prefixItems"]] == sepals
    operation_ids = [op["operationId"] for ops in paths.values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))
