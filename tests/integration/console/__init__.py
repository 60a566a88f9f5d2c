"""The web console, driven in a real headless Chromium (Debian's `chromium`, through CDP with
Playwright; nothing is downloaded): the tests register devices through the REST API and check
what the page shows, texts, counts and rows."""
