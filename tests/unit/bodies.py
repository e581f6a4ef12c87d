"""A SchemaMigration body as the API server returns it, for the pure tests."""

from __future__ import annotations


def body(**spec: object) -> dict:
    return {
        "metadata": {"name": "shop", "namespace": "ns", "uid": "u1", "generation": 3, "resourceVersion": "9"},
        "spec": {
            "version": "3",
            "image": "registry/shop:3",
            "database": {"urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
            **spec,
        },
    }
