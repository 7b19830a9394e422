# quell worker and intake image (one image, two commands): the runtime alone, no extras, no emulator/.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY workflows workflows
COPY activities activities
COPY workers workers
COPY config config
RUN pip install --no-cache-dir . && useradd --system --uid 10001 quell
USER quell
ENTRYPOINT ["quell"]
