# Multi-stage: COPY --from (by name and by index) keeps owners, modes and
# mtimes; FROM an earlier stage; --target. The context holds ctxfile.
FROM localhost/base:1 AS builder
RUN /bin/busybox mkdir -p /out/sub && echo built > /out/sub/artifact && \
    /bin/busybox chown 1000:1000 /out/sub/artifact /out/sub && \
    /bin/busybox chmod 0640 /out/sub/artifact && /bin/busybox chmod 0710 /out/sub && \
    /bin/busybox touch -d "2017-07-14 02:40:00" /out/sub/artifact && \
    /bin/busybox ln -s sub/artifact /out/link
COPY --chown=65534:65534 ctxfile /out/ctxfile

FROM builder AS second
RUN echo second > /second.txt

FROM localhost/base:1 AS final
COPY --from=builder /out /copied-out
COPY --from=second /second.txt /
COPY --from=0 /out/sub/artifact /artifact-by-index
COPY --from=builder /out/sub /subdir-copy
ENV STAGE=final

FROM final AS extra
RUN echo extra > /extra.txt
