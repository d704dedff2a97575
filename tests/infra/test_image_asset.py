"""`cdk synth` stages the image's build context (no Docker needed): exactly what the image needs."""

from __future__ import annotations

import json

NEEDED = {
    *("Dockerfile", "pyproject.toml", "uv.lock", "manage.py", "queues.yml"),
    *("api", "workers", "core", "lambdas", "bin"),
}


def test_the_staged_build_context_holds_the_app_and_nothing_big(synthesized):
    from infra.image import ASSET_EXCLUDE

    # GIVEN the assets manifest of the synthesized stack
    manifest = json.loads((synthesized.outdir / f"{synthesized.stack_name}.assets.json").read_text())

    # WHEN the one docker image asset's staged directory is listed
    [image] = manifest["dockerImages"].values()
    context = synthesized.outdir / image["source"]["directory"]
    staged = {p.name for p in context.iterdir()}

    # THEN it builds the repository's Dockerfile for the tasks' platform
    assert image["source"].get("dockerFile", "Dockerfile") == "Dockerfile"
    assert image["source"]["platform"] == "linux/amd64"
    # AND holds what the image needs, and none of the excluded folders (.venv, node_modules, cdk.out...)
    assert staged >= NEEDED
    assert not staged & {p.split("/")[0] for p in ASSET_EXCLUDE if "*" not in p}
    assert not staged & {"tests", "infra", "README.md", "serverless.yml", "package.json", "docker-compose.yml"}
    assert not list(context.rglob("__pycache__"))
    # AND the start scripts are executable there (COPY keeps the mode)
    for script in ("start-api", "start-worker", "start-beat", "start-outbox-relay"):
        assert (context / "bin" / script).stat().st_mode & 0o111
