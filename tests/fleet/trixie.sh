#!/usr/bin/env bash
# A hypervisor of the next Debian generation (trixie) beside this machine's own:
# a trixie root built by mmdebstrap, run in its own mount, PID, UTS and IPC
# namespaces with its own sshd on a loopback port. One unprivileged user there
# gets a qemu:///session libvirtd, started on its first connection.
#   trixie.sh build       build the root, or keep it while its recipe is unchanged
#   trixie.sh up PUBKEY   build, start with a fresh home for the user, authorize
#                         PUBKEY; prints the inventory variables of the host
#   trixie.sh down        stop it (SIGTERM to the namespace's pid 1) and empty the home
# The root and the cached .debs stay in the lab directory between runs, so a
# rebuild downloads only the package indices.
set -euo pipefail

lab=${KVM_IMAGES_LAB:-/var/lib/kvm-images-lab}
base=$lab/trixie
root=$base/root
cache=$base/debs
console=$base/console.log
mirror=${KVM_IMAGES_TRIXIE_MIRROR:-http://deb.debian.org/debian}
port=${KVM_IMAGES_TRIXIE_PORT:-22023}
# Far above useradd's range (UID_MIN..UID_MAX, 1000..60000): a host user's
# pkill -u can never reach the processes of this one. Its group has the same id.
uid=${KVM_IMAGES_TRIXIE_UID:-250000}
user=kvmimg-trixie
home=/home/$user
# The same path as the test guest's on the host, so labctl.py's default finds it.
guest_dir=/var/lib/kvm-images-lab/guest
packages=(
  qemu-utils qemu-system-x86 libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
  python3 python3-libvirt python3-lxml openssh-server util-linux tini procps
)

log() { printf '==> trixie: %s\n' "$*" >&2; }
die() { printf 'trixie: %s\n' "$*" >&2; exit 1; }

# Everything that decides the root's contents; the stamp is its hash.
make_root() {
  local into=$1
  # No fsync per file (a failed build is thrown away), no recommends, no docs. In a
  # mount namespace of its own: what it mounts in the root goes when it ends, however.
  # shellcheck disable=SC2016 # "$1" is the root, for the hook's own shell
  unshare --mount --propagation private mmdebstrap --mode=root --variant=apt --skip=essential/unlink \
    --dpkgopt=force-unsafe-io --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --include="$(IFS=,; echo "${packages[*]}")" \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives' \
    --setup-hook="sync-in $cache /var/cache/apt/archives/" \
    --customize-hook="sync-out /var/cache/apt/archives $cache.new" \
    --customize-hook="chroot \"\$1\" groupadd --gid $uid $user" \
    --customize-hook="chroot \"\$1\" useradd --uid $uid --gid $uid --home-dir $home --no-create-home --shell /bin/bash --password '*' $user" \
    --customize-hook="chroot \"\$1\" ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/kvm_images_host_key" \
    trixie "$into" "$mirror"
}
recipe() { declare -p packages uid user home; declare -f make_root; }

# Mounts under a path, from this mount namespace's view.
mounts_under() { awk -v p="$1/" 'index($5 "/", p) == 1 { print $5 }' /proc/self/mountinfo; }

# rm -rf that never follows a mount into the host's /dev, /proc or /sys.
remove_tree() {
  [ -e "$1" ] || return 0
  [ -z "$(mounts_under "$1")" ] || die "refusing to remove $1: something is mounted under it"
  rm -rf --one-file-system "$1"
}

# The host pid of the namespace's pid 1 (tini, chrooted into the root), if it runs.
init_pid() {
  local pid
  for pid in $(pgrep -x tini || true); do
    [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$root" ] || continue
    awk '$1 == "NSpid:" && $NF == 1 { found = 1 } END { exit !found }' "/proc/$pid/status" 2>/dev/null || continue
    echo "$pid"
    return 0
  done
  return 1
}

# Any process, in any namespace, whose root is the trixie root.
inside_pids() {
  local dir
  for dir in /proc/[0-9]*; do
    [ "$(readlink "$dir/root" 2>/dev/null)" = "$root" ] && echo "${dir#/proc/}"
  done
  return 0
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

build() {
  mkdir -p "$base" "$cache"
  local want
  want=$(recipe | sha256sum | cut -d' ' -f1)
  if [ -x "$root/usr/sbin/sshd" ] && [ "$(cat "$base/root.recipe" 2>/dev/null)" = "$want" ]; then
    log "root up to date: $root"
    return
  fi
  ! init_pid >/dev/null || die "the root's recipe changed while it runs: trixie.sh down first"
  command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (tools/setup-host.sh installs it)"
  log "building the root $root (debs cached in $cache)"
  remove_tree "$root.new"
  remove_tree "$cache.new"
  mkdir "$cache.new"
  make_root "$root.new" >"$base/build.log" 2>&1 || { tail -n 30 "$base/build.log" >&2; die "mmdebstrap failed (log: $base/build.log)"; }
  # Keep only the .debs this build used: the cache does not grow with every point release.
  remove_tree "$cache"
  mv "$cache.new" "$cache"
  remove_tree "$root"
  mv "$root.new" "$root"
  echo "$want" > "$base/root.recipe"
  log "root built: $(du -sh "$root" | cut -f1), $(find "$cache" -name '*.deb' | wc -l) debs cached"
}

# pid 1 of the namespace, before chroot: its own /proc, /sys, /dev and /run inside the root.
ns_init() {
  mount -t proc proc "$root/proc"
  mount -t sysfs sysfs "$root/sys"
  mount -t tmpfs -o mode=755,size=1m tmpfs "$root/dev"
  local node name major minor
  for node in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
    IFS=: read -r name major minor <<<"$node"
    mknod -m 666 "$root/dev/$name" c "$major" "$minor"
  done
  mkdir "$root/dev/pts" "$root/dev/shm"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$root/dev/pts"
  ln -s pts/ptmx "$root/dev/ptmx"
  ln -s /proc/self/fd "$root/dev/fd"
  ln -s /proc/self/fd/0 "$root/dev/stdin"
  ln -s /proc/self/fd/1 "$root/dev/stdout"
  ln -s /proc/self/fd/2 "$root/dev/stderr"
  mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
  mount -t tmpfs -o mode=755 tmpfs "$root/run"
  mkdir -m 755 "$root/run/sshd"
  : > "$root/run/utmp"
  hostname "$user"
  exec chroot "$root" /usr/bin/tini -- /usr/sbin/sshd -D -e -f /etc/ssh/kvm_images_sshd_config
}

fresh_home() {
  local pubkey=$1
  remove_tree "$root$home"
  install -d -m 755 -o "$uid" -g "$uid" "$root$home" "$root$home/images"
  install -d -m 700 -o "$uid" -g "$uid" "$root$home/.ssh"
  install -m 600 -o "$uid" -g "$uid" "$pubkey" "$root$home/.ssh/authorized_keys"
}

up() {
  local pubkey=${1:?usage: trixie.sh up PUBKEY}
  [ -s "$pubkey" ] || die "no public key at $pubkey"
  build
  if ! init_pid >/dev/null; then
    [ -z "$(inside_pids)" ] || die "processes of an earlier start still run in $root"
    ! port_open || die "127.0.0.1:$port is taken (KVM_IMAGES_TRIXIE_PORT)"
    getent passwd "$uid" >/dev/null && die "uid $uid is a user on this machine (KVM_IMAGES_TRIXIE_UID)"
    fresh_home "$pubkey"
    install -d -m 755 "$root$guest_dir"
    install -m 644 "$lab/guest/vmlinuz" "$lab/guest/initrd.img" "$root$guest_dir/"
    cat > "$root/etc/ssh/kvm_images_sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $port
HostKey /etc/ssh/kvm_images_host_key
PidFile /run/sshd.pid
UsePAM no
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
AllowUsers $user
MaxStartups 64:30:128
Subsystem sftp internal-sftp
CONF
    log "starting on 127.0.0.1:$port"
    setsid unshare --mount --pid --uts --ipc --fork --kill-child --propagation private \
      "$0" ns-init </dev/null >"$console" 2>&1 &
    local step
    for ((step = 0; step < 300; step++)); do
      port_open && break
      [ -d "/proc/$!" ] || { cat "$console" >&2; die "the namespace ended at start"; }
      sleep 0.1
    done
    port_open || { cat "$console" >&2; die "sshd did not listen on 127.0.0.1:$port within 30 s"; }
  else
    install -m 600 -o "$uid" -g "$uid" "$pubkey" "$root$home/.ssh/authorized_keys"
  fi
  echo "ansible_host=127.0.0.1 ansible_port=$port ansible_user=$user" \
    "ansible_python_interpreter=/usr/bin/python3 lab_guest_dir=$guest_dir" \
    "disk_format_state_dir=$home/.kvm-images disk_format_allowed_backing_dirs=\"['$home/images']\""
}

down() {
  local pid parent step
  if pid=$(init_pid); then
    log "stopping (pid 1 of the namespace: $pid)"
    parent=$(awk '$1 == "PPid:" { print $2 }' "/proc/$pid/status")
    kill -TERM "$pid"
    for ((step = 0; step < 100; step++)); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    # Only the namespace's own pid 1: its end takes every process inside with it.
    [ ! -d "/proc/$pid" ] || kill -KILL "$pid" 2>/dev/null || true
    # unshare, waiting for it, exits then.
    for ((step = 0; step < 100; step++)); do
      [ "$(cat "/proc/$parent/comm" 2>/dev/null)" = unshare ] || break
      sleep 0.1
    done
  fi
  for ((step = 0; step < 100; step++)); do [ -n "$(inside_pids)" ] || break; sleep 0.1; done
  [ -z "$(inside_pids)" ] || die "processes still run in $root: $(inside_pids | tr '\n' ' ')"
  if [ -d "$root" ]; then remove_tree "$root$home"; fi
}

case ${1:-} in
  build) build ;;
  up) up "${2:-}" ;;
  down) down ;;
  ns-init) ns_init ;;
  *) echo "usage: trixie.sh build | up PUBKEY | down" >&2; exit 2 ;;
esac
