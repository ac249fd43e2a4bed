# One image for every service; docker-compose.yml picks the service with the command.
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libxml2-dev libcurl4-openssl-dev libssl-dev qemu-utils \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY olvm_backup olvm_backup
COPY schemas schemas
COPY services services
# The product only: no simulator, harness, tests or benches; so the simulator's console script has nothing to run.
RUN pip install --no-cache-dir . && rm -f /usr/local/bin/olvm-sim
USER 1000
ENTRYPOINT ["python", "-m"]
