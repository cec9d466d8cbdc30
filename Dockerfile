# facetell web app and REST API, CPU only. Build: docker build -t facetell .
# Run:   docker run -p 8000:8000 facetell      (then open http://localhost:8000)
FROM python:3.11-slim

# opencv (pulled in by the face detector) needs these shared libraries
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# the CPU build of torch keeps the image small; the pins match pyproject.toml
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 \
      --index-url https://download.pytorch.org/whl/cpu
# setup.py packs models/default and configs/*.yaml into the package: the default model and the
# training recipes then come with it, as with any `pip install .`
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY src ./src
COPY models/default ./models/default
COPY configs ./configs
RUN pip install --no-cache-dir .

# nobody has no home: matplotlib (heat maps) keeps its cache in /tmp instead of warning
ENV FACETELL_HOST=0.0.0.0 FACETELL_PORT=8000 MPLCONFIGDIR=/tmp/matplotlib
EXPOSE 8000
USER nobody
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz')"
CMD ["facetell", "serve"]
