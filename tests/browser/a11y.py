"""Accessibility checks in the browser: axe-core's rules on a page, and the keyboard's tab order.

axe-core is the npm package pinned in ``tests/node/package.json`` (``npm ci --prefix
tests/node`` installs it; ``make test`` does). Its script is evaluated through the DevTools
protocol, which the pages' CSP (no inline script) does not apply to, so the page is checked as
served. Without it the checks skip with the reason, and fail under CI.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

AXE = Path(__file__).resolve().parents[1] / "node" / "node_modules" / "axe-core" / "axe.min.js"
# What fails a page: the two worst of axe's four impacts, and any landmark rule (each page
# must be navigable by its regions), whatever impact axe gives it.
FAILING_IMPACTS = frozenset({"serious", "critical"})
LANDMARK_RULES = ("landmark-", "region")

# What takes focus from the Tab key, in document order, and a name for each that a failing
# assertion can be read by.
_CONTROLS = """() => {
    const name = (e) => `${e.tagName.toLowerCase()}: ${
        (e.getAttribute("aria-label") || e.labels?.[0]?.textContent || e.textContent
         || e.name || "").trim().replace(/\\s+/g, " ").slice(0, 60)}`;
    window.__controlName = name;
    return [...document.querySelectorAll(
        'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]'
    )].filter((e) => e.tabIndex >= 0 && !e.disabled && e.getClientRects().length > 0).map(name);
}"""
_FOCUSED = "() => document.activeElement === document.body ? null"
_FOCUSED += " : window.__controlName(document.activeElement)"


@dataclass(frozen=True)
class Violation:
    rule: str
    impact: str
    help: str
    targets: list[str]

    def __str__(self) -> str:
        return f"{self.rule} ({self.impact}): {self.help}; at {', '.join(self.targets[:5])}"


def _axe_source() -> str:
    if not AXE.exists():
        reason = f"axe-core is not installed: run `npm ci --prefix {AXE.parents[2]}`"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return AXE.read_text()


def violations(page: Page) -> list[Violation]:
    """What axe-core finds wrong on the page as it is now that fails it (see FAILING_IMPACTS)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(_axe_source())
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations.map(
            (v) => ({rule: v.id, impact: v.impact, help: v.help,
                     targets: v.nodes.map((n) => n.target.join(" "))}))"""
    )
    return [
        Violation(**each)
        for each in found
        if each["impact"] in FAILING_IMPACTS or each["rule"].startswith(LANDMARK_RULES)
    ]


def controls(page: Page) -> list[str]:
    """The controls the Tab key should reach, in document order."""
    return list(page.evaluate(_CONTROLS))


def tab_order(page: Page, presses: int) -> list[str | None]:
    """Where focus goes on each of ``presses`` Tab presses, from a page just loaded (focus at
    its top)."""
    page.evaluate(_CONTROLS)  # defines the names
    reached: list[str | None] = []
    for _ in range(presses):
        page.keyboard.press("Tab")
        reached.append(page.evaluate(_FOCUSED))
    return reached
