#!/usr/bin/env bash
# Build (once, cached) the lab guest: Debian's kernel + a busybox-static initramfs with the virtio-net modules.
# Output: $VHOSTPLUG_GUEST_DIR (default /var/cache/vhostplug/guest) holding vmlinuz, initrd.img and a stamp, and
# vmlinux: the same kernel uncompressed, which QEMU loads itself through the kernel's PVH entry (CONFIG_PVH): a TCG guest
# then skips the bzImage's own xz decompression, ~5-6 s of an ~11 s boot here. Lab VMs boot vmlinux when it is there.
# The guest's /init reads its kernel command line:
#   vhp.ip=10.9.0.1/24   address for eth0            vhp.peer=10.9.0.2   ping this peer until it answers
#   vhp.interval=0.1     then keep pinging it at this interval (0 = stop after the first reply)
# and prints VHP-* lines on the serial console (ttyS0): VHP-READY, VHP-PING-OK, VHP-PING-FAIL, ping output.
# Idempotent: rebuilds only when the kernel or this script changed. Needs linux-image-amd64, busybox-static, cpio, xz.
set -euo pipefail

OUT=${VHOSTPLUG_GUEST_DIR:-/var/cache/vhostplug/guest}
KVER=${VHOSTPLUG_GUEST_KVER:-$(ls /lib/modules | sort -V | tail -n1)}
KERNEL=/boot/vmlinuz-$KVER
MODDIR=/lib/modules/$KVER/kernel
BUSYBOX=/bin/busybox
MODULES=(drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev
         drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci net/core/failover drivers/net/net_failover
         drivers/net/virtio_net)

for f in "$KERNEL" "$BUSYBOX"; do
  [ -r "$f" ] || { echo "build-guest: $f is missing (install linux-image-amd64 and busybox-static)" >&2; exit 1; }
done
# grep reads the whole list (no -q): quitting at the match would SIGPIPE busybox, and pipefail would call that a miss
"$BUSYBOX" --list | grep -x ping >/dev/null || { echo "build-guest: $BUSYBOX has no ping applet (need busybox-static)" >&2; exit 1; }

stamp_want="$KVER $(sha256sum "$0" | cut -c1-16) $(stat -c %s "$KERNEL")"
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$stamp_want" ] && [ -s "$OUT/initrd.img" ] && [ -s "$OUT/vmlinuz" ]; then
  echo "build-guest: cached in $OUT"
  exit 0
fi

work=$(mktemp -d /tmp/vhp-guest.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules}
cp "$BUSYBOX" "$root/bin/busybox"
for m in "${MODULES[@]}"; do
  src=""
  for ext in .ko .ko.xz .ko.zst; do [ -f "$MODDIR/$m$ext" ] && src="$MODDIR/$m$ext" && break; done
  if [ -z "$src" ]; then
    # built into this kernel: nothing to load
    grep -q "/${m##*/}.ko" "/lib/modules/$KVER/modules.builtin" 2>/dev/null && continue
    echo "build-guest: module $m not found for kernel $KVER" >&2; exit 1
  fi
  case "$src" in
    *.xz) xz -dc "$src" > "$root/lib/modules/${m##*/}.ko" ;;
    *.zst) zstd -qdc "$src" > "$root/lib/modules/${m##*/}.ko" ;;
    *) cp "$src" "$root/lib/modules/${m##*/}.ko" ;;
  esac
  echo "${m##*/}" >> "$root/lib/modules/order"
done

cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
con=/dev/ttyS0
[ -c $con ] || con=/dev/console
exec >$con 2>&1
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko 2>/dev/null; done
arg() { for w in $(cat /proc/cmdline); do case "$w" in "$1="*) echo "${w#*=}";; esac; done; }
ip=$(arg vhp.ip); peer=$(arg vhp.peer); interval=$(arg vhp.interval)
ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
if [ ! -e /sys/class/net/eth0 ]; then echo "VHP-NO-ETH0"; fi
[ -n "$ip" ] && ip addr add "$ip" dev eth0
ip link set eth0 up
echo "VHP-READY ip=$ip mac=$(cat /sys/class/net/eth0/address 2>/dev/null) uptime=$(cut -d' ' -f1 /proc/uptime)"
if [ -n "$peer" ]; then
  ok=0
  for i in $(seq 1 120); do
    if ping -c 1 -W 1 "$peer" >/dev/null 2>&1; then ok=1; break; fi
  done
  if [ $ok = 1 ]; then
    echo "VHP-PING-OK peer=$peer tries=$i uptime=$(cut -d' ' -f1 /proc/uptime)"
    ping -c 3 "$peer"
    if [ -n "$interval" ] && [ "$interval" != 0 ]; then ping -i "$interval" "$peer"; fi
  else
    echo "VHP-PING-FAIL peer=$peer"
  fi
fi
echo "VHP-IDLE"
while true; do sleep 3600; done
INIT
chmod 755 "$root/init"

mkdir -p "$OUT"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$work/initrd.img"
cp "$KERNEL" "$work/vmlinuz"
rm -f "$OUT/vmlinux"
if grep -q '^CONFIG_PVH=y' "/boot/config-$KVER" 2>/dev/null; then
  # the bzImage's payload: the first xz stream in it (Debian builds with CONFIG_KERNEL_XZ)
  off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$KERNEL" | head -n1 | cut -d: -f1 || true)
  if [ -n "$off" ] && xz -dc --single-stream < <(tail -c +$((off + 1)) "$KERNEL") > "$work/vmlinux" 2>/dev/null \
     && [ "$(head -c 4 "$work/vmlinux" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
    install -m 0644 "$work/vmlinux" "$OUT/vmlinux"
  else
    echo "build-guest: no uncompressed kernel from $KERNEL: lab VMs boot the bzImage (slower under TCG)" >&2
  fi
fi
install -m 0644 "$work/vmlinuz" "$OUT/vmlinuz"
install -m 0644 "$work/initrd.img" "$OUT/initrd.img"
chmod 755 "$OUT"
echo "$stamp_want" > "$OUT/stamp"
echo "build-guest: built $OUT (kernel $KVER, initrd $(du -h "$OUT/initrd.img" | cut -f1))"
