#!/bin/busybox sh
# PID 1 of the guest that `cargo xtask test --kernel …` boots (see xtask/src/vm.rs, which
# fills in the @…@ placeholders). It prepares the few file systems the scenarios need, runs
# the scenario test binaries (/cmt/tests/*) one test at a time, and reports on the serial
# console. The host parses only lines that carry a marker, because firmware escape codes and
# kernel messages share the console:
#   @@CMT-KERNEL@@ <uname -r>
#   @@CMT-TEST@@ <the name of a test about to run, in order> (to name a test that hangs)
#   @@CMT@@ <a line of a test binary's output>
#   @@CMT-DMESG@@ <a kernel log line> (the whole kernel log, after a failure)
#   @@CMT-STATUS@@ <0, a failed test binary's exit status, or a word if the set-up failed>
# then makes qemu exit through isa-debug-exit (poweroff -f if that device is missing).

# Applet links (sh, sleep, touch, true, mount, …) in /bin, /sbin, /usr/bin and /usr/sbin.
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp

finish() {
    echo "@@CMT-STATUS@@ $1"
    if [ "$1" = 0 ]; then /cmt/exit-pass; else /cmt/exit-fail; fi
    poweroff -f
}

setup_failed() {
    echo "@@CMT@@ guest set-up failed: $*"
    dmesg | sed 's/^/@@CMT-DMESG@@ /'
    finish setup-failed
}

mount -t proc proc /proc || setup_failed "mount /proc"
mount -t sysfs sysfs /sys || setup_failed "mount /sys"
mount -t devtmpfs devtmpfs /dev || setup_failed "mount /dev"
mount -t tmpfs -o mode=1777 tmpfs /tmp || setup_failed "mount /tmp"
# Optional: classic tracepoints (a fallback on older kernels) find their ids in tracefs.
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null

# The memory cgroup hierarchy the OOM scenario uses: `cmt_cgroup` comes from the kernel
# command line (the kernel hands unknown `name=value` parameters to init as variables).
case "$cmt_cgroup" in
v1)
    mount -t tmpfs -o mode=0755 cgroup /sys/fs/cgroup || setup_failed "tmpfs on /sys/fs/cgroup"
    mkdir /sys/fs/cgroup/memory
    mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory || setup_failed "cgroup v1 memory"
    ;;
v2)
    mount -t cgroup2 cgroup2 /sys/fs/cgroup || setup_failed "cgroup2"
    echo +memory > /sys/fs/cgroup/cgroup.subtree_control || setup_failed "+memory in cgroup2"
    ;;
*)
    setup_failed "cmt_cgroup must be v1 or v2 on the kernel command line, not '$cmt_cgroup'"
    ;;
esac

echo "@@CMT-KERNEL@@ $(uname -r)"
cd /tmp
status=0
for test in /cmt/tests/*; do
    "$test" --list @TEST_ARGS@ 2>/dev/null | sed -n 's/^\(.*\): test$/@@CMT-TEST@@ \1/p'
    {
        CI=true \
        RUST_BACKTRACE=1 \
        CLAUDE_MONITOR_BIN=/cmt/claude-monitor \
        CLAUDE_MONITOR_HELPERS=/cmt/helpers \
        CLAUDE_MONITOR_STORM=@STORM@ \
            "$test" --test-threads=1 @TEST_ARGS@
        echo $? > /run-status
    } 2>&1 | while IFS= read -r line || [ -n "$line" ]; do echo "@@CMT@@ $line"; done
    result=$(cat /run-status 2>/dev/null || echo unknown)
    rm -f /run-status
    [ "$result" = 0 ] || status=$result
done

if [ "$status" != 0 ]; then
    dmesg | sed 's/^/@@CMT-DMESG@@ /'
fi
finish "$status"
