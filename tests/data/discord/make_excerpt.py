"""Cut the request schemas the Discord adapter sends out of Discord's OpenAPI description.

Usage: python tests/data/discord/make_excerpt.py --spec PATH/discord-openapi.json --out tests/data/discord/openapi_excerpt.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# Request bodies of the endpoints the adapter calls (message create, interaction callbacks that create or
# update a message, followups and the @original edit, bulk command overwrite).
ROOTS = ("MessageCreateRequest", "CreateMessageInteractionCallbackRequest", "UpdateMessageInteractionCallbackRequest",
         "IncomingWebhookRequestPartial", "IncomingWebhookUpdateRequestPartial", "ApplicationCommandUpdateRequest")


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        out = {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            out |= _refs(value)
        return out
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def excerpt(spec: dict[str, Any]) -> dict[str, Any]:
    """The transitive closure of ROOTS over `$ref`s, as a document with the same JSON pointers."""
    schemas = spec["components"]["schemas"]
    seen: set[str] = set()
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_refs(schemas[name]) - seen)
    return {"info": {"source": "github.com/discord/discord-api-spec specs/openapi.json",
                     "version": spec["info"].get("version"), "roots": list(ROOTS)},
            "components": {"schemas": {k: schemas[k] for k in sorted(seen)}}}


def main() -> None:
    """Write the excerpt."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spec", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    doc = excerpt(json.loads(args.spec.read_text(encoding="utf-8")))
    args.out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
