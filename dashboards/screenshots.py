"""PNG screenshots of every view of a built dashboard, taken in headless Chromium (the browser tests use
the same browser setup). Needs Debian's `chromium` and `chromium-driver` and the `selenium` package.

    python -m dashboards.screenshots results/dashboard/index.html results/dashboard
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: without the background-networking flags Chromium waits on services a closed network never answers
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


def chromium(user_data_dir: str | Path):
    """A headless Chromium WebDriver with a fresh profile at `user_data_dir`, keeping the console log."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS + (f"--user-data-dir={user_data_dir}",):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_for_figures(driver, timeout_s: float = 30.0) -> int:
    """Wait until the page has loaded and every plotly figure has drawn its SVG; returns how many drew."""
    deadline = time.monotonic() + timeout_s
    script = (
        "var plots = document.querySelectorAll('.js-plotly-plot');"
        "return [document.readyState, plots.length, Array.prototype.filter.call(plots, function (p) {"
        "  var svg = p.querySelector('svg.main-svg'); return svg && svg.childElementCount > 0; }).length];"
    )
    while True:
        state, total, drawn = driver.execute_script(script)
        if (state == "complete" and total == drawn) or time.monotonic() > deadline:
            return drawn
        time.sleep(0.1)


def view_ids(driver) -> list[str]:
    return driver.execute_script(
        "return Array.prototype.map.call(document.querySelectorAll('section.pb-view'), function (s) { return s.id; });"
    )


def screenshot_view(driver, view_id: str, path: Path) -> Path:
    """A PNG of one view (`section#view_id`), the window made tall enough to hold all of it."""
    from selenium.webdriver.common.by import By

    section = driver.find_element(By.ID, view_id)
    height = driver.execute_script("return arguments[0].getBoundingClientRect().height;", section)
    driver.set_window_size(1400, int(height) + 200)
    driver.execute_script("arguments[0].scrollIntoView();", section)
    section.screenshot(str(path))
    return path


def open_first_run(driver) -> None:
    """Click the first run of the run table, so the runs view shows a detail view."""
    from selenium.webdriver.common.by import By

    lines = driver.find_elements(By.CSS_SELECTOR, "#pb-run-table tbody tr")
    if lines:
        lines[0].click()


def screenshot_views(page_url: str, out_dir: str | Path) -> list[Path]:
    """One `<view>.png` per view of the page at `page_url`, in `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        driver = chromium(profile)
        try:
            driver.get(page_url)
            wait_for_figures(driver)
            open_first_run(driver)
            return [screenshot_view(driver, view, out_dir / f"{view}.png") for view in view_ids(driver)]
        finally:
            driver.quit()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("page", type=Path, help="a dashboard built with `phasebench dashboard build`")
    parser.add_argument("out_dir", type=Path, help="folder for the PNGs")
    args = parser.parse_args(argv)
    for path in screenshot_views(args.page.resolve().as_uri(), args.out_dir):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
