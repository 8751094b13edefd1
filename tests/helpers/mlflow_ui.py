"""The MLflow 3.17 UI driven as a user drives it, in headless Chromium (Playwright, Debian's browser).

Only what the promotion tests click: a version's page, the alias editor of the new model registry UI,
and the legacy stage menu (after switching the new UI off). Each action waits until the UI shows
its result, so the next assertion reads a settled registry.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium() -> str:
    """Debian's Chromium (`apt-get install chromium`, done by .ci/run); never a download at run time."""
    found = os.environ.get("EMS_TEST_CHROMIUM") or next(
        (p for p in CHROMIUM_CANDIDATES if Path(p).is_file()), None) or shutil.which("chromium")
    if not found:
        message = "Chromium is not installed: `apt-get install chromium` (Debian) runs the MLflow UI tests"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


class MlflowUI:
    """One browser page on one MLflow server."""

    def __init__(self, page, base_url: str):
        self.page = page
        self.base = base_url.rstrip("/")

    def version(self, name: str, version: int) -> None:
        self.page.goto(f"{self.base}/#/models/{name}/versions/{version}")
        self.page.get_by_role("heading", name=f"Version {version}").wait_for()
        self.page.get_by_role("switch", name="New model registry UI").wait_for()

    def _registry_ui(self, new: bool) -> None:
        switch = self.page.get_by_role("switch", name="New model registry UI")
        if (switch.get_attribute("aria-checked") == "true") != new:
            switch.click()
            if not new:  # switching the new UI off asks first
                self.page.get_by_role("dialog").get_by_role("button", name="Disable").click()
            self.page.get_by_role("switch", name="New model registry UI", checked=new).wait_for()

    def _field(self, label: str):
        """The content of one `Label: value` item of the version page's header."""
        label_el = self.page.locator("[data-testid=descriptions-item-label]").get_by_text(label, exact=True)
        return self.page.locator("[data-testid=descriptions-item]").filter(has=label_el).locator(
            "[data-testid=descriptions-item-content]")

    def add_alias(self, name: str, version: int, alias: str) -> None:
        """New model registry UI: Aliases -> Add (or the pencil) -> type the alias -> Save aliases."""
        self.version(name, version)
        self._registry_ui(new=True)
        aliases = self._field("Aliases")
        add = aliases.get_by_role("button", name="Add", exact=True)
        (add if add.count() else aliases.get_by_title("Edit aliases")).click()
        dialog = self.page.get_by_role("dialog", name=f"Add/Edit alias for model version {version}")
        box = dialog.get_by_role("combobox")
        box.click()
        box.fill(alias)
        self.page.keyboard.press("Enter")
        with self.page.expect_response(lambda r: "/registered-models/alias" in r.url) as answer:
            dialog.get_by_role("button", name="Save aliases").click()
        assert answer.value.ok, f"MLflow answered the alias change with HTTP {answer.value.status}"
        dialog.wait_for(state="hidden")

    def transition(self, name: str, version: int, stage: str, archive_existing: bool) -> None:
        """Legacy stage control: Stage tag -> Transition to <stage> -> (archive existing) -> OK."""
        self.version(name, version)
        self._registry_ui(new=False)
        self._field("Stage").locator(".mlflow-stage-transition-dropdown").click()
        self.page.get_by_role("menuitem").filter(has_text=stage).click()
        dialog = self.page.get_by_role("dialog", name="Stage transition")
        checkbox = dialog.get_by_role("checkbox")
        if checkbox.count():
            checkbox.set_checked(archive_existing)
        with self.page.expect_response(lambda r: "/model-versions/transition-stage" in r.url) as answer:
            dialog.get_by_role("button", name="OK").click()
        assert answer.value.ok, f"MLflow answered the stage transition with HTTP {answer.value.status}"
        dialog.wait_for(state="hidden")

    def stage_shown(self, name: str, version: int) -> str:
        """The stage the legacy version page shows."""
        self.version(name, version)
        self._registry_ui(new=False)
        return self._field("Stage").inner_text().strip()

    def refused(self, name: str, version: int) -> int:
        """Open another tenant's version page: the HTTP status MLflow answered the UI's read of it with,
        once the page shows its error instead of the version."""
        with self.page.expect_response(lambda r: "/model-versions/get" in r.url and name in unquote(r.url)) as answer:
            self.page.goto(f"{self.base}/#/models/{name}/versions/{version}")
        self.page.get_by_text("An error occurred", exact=False).first.wait_for()
        return answer.value.status
