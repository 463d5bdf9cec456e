# k2 image for operators who run the pipeline with Docker.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/opt/k2
WORKDIR /app
RUN pip install --no-cache-dir uv
COPY pyproject.toml uv.lock README.md ./
COPY k2cli ./k2cli
RUN uv sync --frozen --no-dev && ln -s /opt/k2/bin/k2 /usr/local/bin/k2
ENTRYPOINT ["k2"]
CMD ["--help"]
