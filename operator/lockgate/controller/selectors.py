"""Tenants' Secrets picked by label: spec.targets.databases.selector and canary.selector (pure).

The operator lists the Secrets each selector matches, their names only (a metadata-only listing,
reconciler.py); here the matches become targets, after those listed by name, and the canary
selector's matches move first, in list order, as the canary wave (`canary` of them): the waves
then run as with canary.count. Each Job records the target list it covered, so a Secret
relabelled mid-release changes its wave's list, and the phase runs again from the canary wave
(waves.behind, ledger._covers_spec): a target that has the version applies nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..shared.targets import DATABASE
from .targets import SECRET_NAME, SECRETS, Targets, name_problems

LABEL = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?")  # a label value
LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
# Secrets are not watched (`list` is the one right a selector asks for): its matches are listed at
# each pass, and at least this often, so a new tenant's Secret becomes a target soon.
SELECTOR_REFRESH = 30.0
_REQUIREMENT = "In and NotIn take label values, Exists and DoesNotExist none; each matchLabels value is a label value"
SELECTOR, CANARY_SELECTOR = "spec.targets.databases.selector", "spec.targets.canary.selector"


def forbidden(field: str, instead: str) -> str:
    """The problem of a selector the operator may not list Secrets for (the chart grants it when asked)."""
    return (
        f"{field}: the operator may not list Secrets in this namespace: install its chart with "
        f"rbac.secretSelector=true (it then lists their names only, never their data), or {instead}"
    )


SECRETS_FORBIDDEN = forbidden(SELECTOR, f"list the tenants' Secrets in {SECRETS}")
CANARY_FORBIDDEN = forbidden(CANARY_SELECTOR, "pick the canaries with spec.targets.canary.count")


def parse_selectors(raw: Mapping[str, Any], targets: Targets) -> tuple[Targets, list[str]]:
    """spec.targets' label selectors as the API's labelSelector queries, and what is wrong with them."""
    selector, problems = label_selector((raw.get("databases") or {}).get("selector"), SELECTOR)
    raw_canary = (raw.get("canary") or {}).get("selector")
    canary, wrong = label_selector(raw_canary, CANARY_SELECTOR)
    if raw_canary is not None and targets.kind != DATABASE:
        wrong = [f"{CANARY_SELECTOR}: schemas have no labels: pick the canaries with spec.targets.canary.count"]
    return replace(targets, selector=selector, canary_selector=canary), problems + wrong


def label_selector(raw: Mapping[str, Any] | None, field: str) -> tuple[str, list[str]]:
    """A label selector (matchLabels, matchExpressions) as the API's labelSelector query, and what is wrong with it."""
    if raw is None:
        return "", []
    terms = [(k, "=", [v]) for k, v in sorted((raw.get("matchLabels") or {}).items())]
    terms += [(e.get("key"), e.get("operator"), list(e.get("values") or [])) for e in raw.get("matchExpressions") or []]
    parts, problems = [], []
    for key, operator, values in terms:
        if not isinstance(key, str) or not LABEL_KEY.fullmatch(key):
            problems.append(f"{field}: {key!r} is not a label key")
        elif (
            operator in ("=", "In", "NotIn")
            and values
            and all(isinstance(v, str) and LABEL.fullmatch(v) for v in values)
        ):
            parts.append(f"{key}={values[0]}" if operator == "=" else f"{key} {operator.lower()} ({','.join(values)})")
        elif operator in ("Exists", "DoesNotExist") and not values:
            parts.append(key if operator == "Exists" else f"!{key}")
        else:
            problems.append(f"{field}: {key} {operator} {values}: {_REQUIREMENT}")
    if not terms:
        problems.append(f"{field}: give matchLabels or matchExpressions: an empty one would take every Secret")
    return ",".join(parts), problems


def selected(targets: Targets, found: tuple[str, ...] | None) -> tuple[Targets, list[str]]:
    """spec.targets with the Secrets its selector matched (`found`; None: the operator may not list
    Secrets) after those it lists, by name, and what is wrong: a new match is a new target."""
    names = targets.names + tuple(sorted(set(found or ()) - set(targets.names)))
    if found is None:
        problems = [SECRETS_FORBIDDEN]
    elif not names:
        problems = [f"{SELECTOR}: no Secret here matches {targets.selector} and {SECRETS} lists none"]
    else:
        problems = name_problems(f"{SECRETS} and the selector's matches", list(names), SECRET_NAME)
    if names and targets.canary >= len(names):
        problems.append(
            f"spec.targets.canary.count: {targets.canary} leaves none of the {len(names)} targets for the rest"
        )
    return replace(targets, names=names), problems


def canaries_first(targets: Targets, matched: tuple[str, ...] | None) -> tuple[Targets, list[str]]:
    """spec.targets with the targets whose Secret canary.selector matched (`matched`; None: the
    operator may not list Secrets) first, in list order, as the canary wave, and what is wrong:
    a canary wave of none, or of every target, leaving none for the rest."""
    if matched is None:
        return targets, [CANARY_FORBIDDEN]
    canaries = tuple(n for n in targets.names if n in set(matched))
    rest = tuple(n for n in targets.names if n not in set(matched))
    query, total = targets.canary_selector, len(targets.names)
    if not canaries:
        return targets, [f"{CANARY_SELECTOR}: none of the {total} targets' Secrets matches {query}: label at least one"]
    if not rest:
        return targets, [
            f"{CANARY_SELECTOR}: each of the {total} targets' Secrets matches {query}: leave at least one for the rest"
        ]
    return replace(targets, names=canaries + rest, canary=len(canaries)), []
