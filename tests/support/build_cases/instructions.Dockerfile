# Every instruction that both img and buildah 1.28 take, built by both with
# the same context (made by tests/build.sh: make_instructions_context) and
# --build-arg BASE=localhost/base:1 --build-arg FLAVOR=vanilla.
ARG BASE=nonexistent/base:9
ARG UNUSED=before-from
FROM ${BASE}
ARG VERSION=1.0
ARG FLAVOR
MAINTAINER Img Tester <img@example.com>
LABEL org.example.version="$VERSION" org.example.flavor=${FLAVOR:-none} multi="a b"
LABEL "org.example.quoted"="quoted key"
ENV A=1 B="two words"
ENV C three words form
ENV PATH=/usr/local/bin:$PATH
RUN /bin/busybox --install -s /bin
RUN ["/bin/busybox", "sh", "-c", "echo exec-form $A $VERSION > /exec.txt"]
RUN echo "args: $VERSION $FLAVOR unused=${UNUSED:-unset}" > /args.txt
COPY file.txt /copied/file.txt
COPY dir /copied/dir/
COPY *.glob /globbed/
COPY file.txt dir/top.txt /copied/several/
COPY --chown=user:user owned.txt /owned/named.txt
COPY --chown=1234:5678 owned.txt /owned/new/numeric.txt
COPY --chown=65534 owned.txt /owned/uid-only.txt
COPY --chmod=0600 mode.txt /modes/
COPY --chmod=0750 --chown=1000:1000 dir /modes/dir/
COPY link.txt /copied/link.txt
ADD archive.tar.gz /extracted/
ADD plain.txt /added/plain.txt
WORKDIR /work/sub
RUN pwd > where.txt && id -u > uid.txt
WORKDIR relative
RUN pwd > where.txt
# buildah makes VOLUME's directories in the layer when they are missing,
# img (like BuildKit) does not: they are made here so that the trees compare.
RUN mkdir -p /data/vol /vol2 /vol3
USER user
WORKDIR /home/user/wd
RUN id -u > uid.txt && touch made-by-user && echo "$B" > /tmp/user-env.txt
EXPOSE 80 443/tcp 53/udp
EXPOSE 8080
VOLUME /data/vol /vol3
VOLUME ["/vol2"]
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo hello"]
SHELL ["/bin/sh", "-ec"]
RUN echo "shell $VERSION $FLAVOR $A $B $C" > /tmp/shell.txt
HEALTHCHECK --interval=30s --timeout=5s --start-period=2s --retries=2 CMD ["/bin/true"]
STOPSIGNAL SIGTERM
ONBUILD RUN echo child > /tmp/onbuild.txt
USER 1000:1000
