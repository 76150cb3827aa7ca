# Heredocs (img only: buildah 1.28 does not take them).
FROM localhost/base:1
ARG WHO=heredoc
RUN <<EOF
echo "line1" > /h1.txt
echo "line2 $WHO" >> /h1.txt
EOF
RUN <<EOF /bin/busybox sh -c 'cat > /h-stdin.txt'
fed on standard input
EOF
COPY <<EOF /etc/greeting
hello from a heredoc
  indented $WHO
EOF
COPY <<-EOT /tabs.txt
	tab-stripped
	EOT
COPY <<'EOF' /quoted.txt
not expanded: $WHO
EOF
RUN <<ONE cat /etc/greeting > /h2.txt
ONE
