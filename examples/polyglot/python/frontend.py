"""The polyglot stack's Python functions: ``Frontend`` (the entry point) and ``Echo``.

``Frontend`` takes an order as JSON::

    {"user": "ada", "token": "demo-ada", "items": [{"sku": "A1", "qty": 2, "price_cents": 350}]}

validates it (a non-empty ``user``, a ``token`` string, 1 to 50 items each with a ``sku``
string, a positive integer ``qty`` and a non-negative integer ``price_cents``), adds a
``frontend`` section (item count, subtotal) and passes it on with an internal call to ``Auth``
(Go), whose answer it returns. An invalid order fails the call (HTTP 500, ``HANDLER_FAILED``).
"""

from __future__ import annotations

import json
from typing import Any

import gloam


def validate(order: Any) -> list[dict[str, Any]]:
    """Return the order's items, or raise ``ValueError`` naming what is wrong."""
    if not isinstance(order, dict):
        raise ValueError("Frontend: the order must be a JSON object")
    if not isinstance(order.get("user"), str) or not order["user"]:
        raise ValueError("Frontend: `user` must be a non-empty string")
    if not isinstance(order.get("token"), str):
        raise ValueError("Frontend: `token` must be a string")
    items = order.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= 50:
        raise ValueError("Frontend: `items` must be a list of 1 to 50 items")
    for i, item in enumerate(items):
        ok = (
            isinstance(item, dict)
            and isinstance(item.get("sku"), str)
            and type(item.get("qty")) is int
            and item["qty"] > 0
            and type(item.get("price_cents")) is int
            and item["price_cents"] >= 0
        )
        if not ok:
            raise ValueError(
                f"Frontend: items[{i}] needs sku (string), qty (> 0), price_cents (>= 0)"
            )
    return items


async def frontend(ctx: gloam.Context, data: bytes) -> bytes:
    """Validate the order, add the subtotal, call ``Auth``."""
    try:
        order = json.loads(data or b"null")
    except ValueError as exc:
        raise ValueError(f"Frontend: the input is not JSON: {exc}") from None
    items = validate(order)
    order["frontend"] = {
        "lang": "python",
        "items": len(items),
        "subtotal_cents": sum(i["qty"] * i["price_cents"] for i in items),
    }
    return await ctx.invoke("Auth", json.dumps(order, separators=(",", ":")).encode())


def echo(ctx: gloam.Context, data: bytes) -> bytes:
    """Return the input."""
    return data


if __name__ == "__main__":
    gloam.serve({"Frontend": frontend, "Echo": echo})
