# devreg worker image: slim, non-root, with a health check.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY events events
COPY projections projections
COPY services services
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --home-dir /var/lib/devreg devreg \
    && mkdir -p /var/lib/devreg && chown devreg /var/lib/devreg
USER devreg
WORKDIR /var/lib/devreg
ENV DEVREG_DATA_DIR=/var/lib/devreg \
    DEVREG_HTTP_HOST=0.0.0.0 \
    DEVREG_HTTP_PORT=8080 \
    DEVREG_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["devreg"]
CMD ["worker"]
