#!/usr/bin/env bash
# Several independent hypervisors on one machine: one unix user per host, each
# with its own qemu:///session libvirtd, reached over ssh on loopback.
#   fleet.sh up N DIR     users kvmimg-hv1..N, an sshd on 127.0.0.1, DIR/inventory.ini
#   fleet.sh down N DIR   removes their domains, daemons, users and DIR
set -euo pipefail

action=${1:?usage: fleet.sh up|down N DIR}
count=${2:?usage: fleet.sh up|down N DIR}
dir=${3:?usage: fleet.sh up|down N DIR}
port=${KVM_IMAGES_FLEET_PORT:-22022}
guest_dir=${KVM_IMAGES_LAB:-/var/lib/kvm-images-lab}/guest
prefix=kvmimg-hv

user_of() { echo "$prefix$1"; }

up() {
  mkdir -p "$dir" /run/sshd
  chmod 755 "$dir"
  [ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/id_ed25519"
  [ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
  cat > "$dir/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $port
HostKey $dir/host_key
PidFile $dir/sshd.pid
UsePAM no
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
AllowUsers ${prefix}*
# Ansible opens a connection per fork and host at once; sshd's default (10:30:100)
# drops some. Without an sftp subsystem every file transfer fails twice before
# Ansible falls back to piping it.
MaxStartups 64:30:128
Subsystem sftp internal-sftp
CONF
  local i user home
  {
    echo "[hypervisors]"
    for i in $(seq 1 "$count"); do
      user=$(user_of "$i")
      id "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
      # "*": no password, but not locked (sshd without PAM refuses locked accounts).
      usermod -p "*" "$user"
      home=$(getent passwd "$user" | cut -d: -f6)
      chmod 755 "$home"
      install -d -m 700 -o "$user" -g "$user" "$home/.ssh"
      install -m 600 -o "$user" -g "$user" "$dir/id_ed25519.pub" "$home/.ssh/authorized_keys"
      install -d -m 755 -o "$user" -g "$user" "$home/images"
      echo "hv$i ansible_host=127.0.0.1 ansible_port=$port ansible_user=$user lab_guest_dir=$guest_dir disk_format_state_dir=$home/.kvm-images disk_format_allowed_backing_dirs=\"['$home/images']\""
    done
    echo
    echo "[hypervisors:vars]"
    echo "ansible_ssh_private_key_file=$dir/id_ed25519"
    echo "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'"
    echo "ansible_python_interpreter=/usr/bin/python3"
    echo "disk_format_uri=qemu:///session"
  } > "$dir/inventory.ini"
  if ! { [ -s "$dir/sshd.pid" ] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null; }; then
    /usr/sbin/sshd -f "$dir/sshd_config"
  fi
  echo "$dir/inventory.ini"
}

down() {
  local i user home name
  for i in $(seq 1 "$count"); do
    user=$(user_of "$i")
    id "$user" >/dev/null 2>&1 || continue
    home=$(getent passwd "$user" | cut -d: -f6)
    for name in $(su - "$user" -c 'virsh -c qemu:///session list --all --name' 2>/dev/null); do
      su - "$user" -c "virsh -c qemu:///session destroy '$name'" >/dev/null 2>&1 || true
      su - "$user" -c "virsh -c qemu:///session undefine --managed-save --snapshots-metadata '$name'" >/dev/null 2>&1 || true
    done
    pkill -u "$user" >/dev/null 2>&1 || true
    mountpoint -q "$home/images" && umount "$home/images"
    for _ in 1 2 3 4 5 6 7 8 9 10; do pgrep -u "$user" >/dev/null || break; sleep 0.5; done
    pkill -9 -u "$user" >/dev/null 2>&1 || true
    userdel -r "$user" >/dev/null 2>&1 || true
  done
  if [ -s "$dir/sshd.pid" ]; then kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true; fi
  rm -rf "$dir"
}

case $action in
  up) up ;;
  down) down ;;
  *) echo "usage: fleet.sh up|down N DIR" >&2; exit 2 ;;
esac
