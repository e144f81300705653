"""Opens a report in headless Chromium (Debian's package, driven by Playwright) to check it renders."""

from __future__ import annotations

import shutil
from pathlib import Path

# a closed network: without these, Chromium keeps trying to reach Google's services
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render(report: str | Path, screenshot: str | Path, sections: tuple[str, ...]) -> dict:
    """Loads ``report``; returns console errors, which sections are visible and whether every
    embedded image decoded; saves a full-page screenshot."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise FileNotFoundError("chromium not found; on Debian: apt-get install chromium")
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(Path(report).resolve().as_uri())
        visible = {s: page.locator(f"section#{s}").is_visible() for s in sections}
        images_ok = page.evaluate("Array.from(document.images).every(img => img.complete && img.naturalWidth > 0)")
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return {"errors": errors, "visible": visible, "images_ok": images_ok}
