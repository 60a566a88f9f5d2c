"""The web console: static assets (HTML, CSS, ES modules, no build step) served by devreg."""
