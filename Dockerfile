# The Traffic Center as a container: slim Python, a non-root user, `traffic-center serve`.
# Dependencies come from requirements-postgres.lock (exact versions, hashes checked: two
# builds install the same bytes); the package itself is installed without resolving anything.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY traffic_center ./traffic_center
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/traffic-center --create-home tc
# Its own layer: rebuilt only when the lock changes.
COPY requirements-postgres.lock /tmp/requirements.lock
RUN pip install --no-cache-dir --require-hashes --no-deps -r /tmp/requirements.lock \
    && rm /tmp/requirements.lock
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels \
    && pip check
USER tc
WORKDIR /var/lib/traffic-center
# State (CA, SQLite database, server secret) lives in TC_HOME; mount a volume there.
# The plain-HTTP ops port (/metrics /healthz /readyz) stays on the container's loopback, where
# the HEALTHCHECK reaches it; to scrape it from outside, set TC_OPS_HOST=0.0.0.0 and keep the
# port on a private network (docs/security.md).
ENV TC_HOME=/var/lib/traffic-center \
    TC_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
EXPOSE 8443 9464
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["traffic-center"]
CMD ["serve"]
