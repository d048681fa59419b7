# shellcheck shell=bash
# Sourced by the targets that run the disk_format role through ansible-playbook themselves,
# to kill it or to change the hypervisor under it. Set target (the scratch directory's name)
# and prefix (of the guests' names) first; defines lab, labctl, virsh and the helpers below.
collection=${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/kvm/images
lab=${KVM_IMAGES_LAB_DIR:-/var/lib/kvm-images-lab}/scratch/${target:?}
python=${ANSIBLE_TEST_PYTHON_INTERPRETER:-$(command -v python3)}
# shellcheck disable=SC2034 # for the scripts that source this one
labctl=("$python" "$collection/tests/guest/labctl.py")
virsh=(virsh -c qemu:///system)
run_log=$lab/background-run.log

# Once the script has its cleanup function: run it now and on exit, and start from an empty lab.
fresh_lab() {
  trap cleanup EXIT
  cleanup
  mkdir -p "$lab"
  chmod 755 "$lab"
}
fail() {
  echo "FAILED: $*" >&2
  [ ! -e "$run_log" ] || tail -n 40 "$run_log" >&2
  exit 1
}
# A shell glob that matches a file within the time given, or a failure.
wait_for() {
  local pattern=$1 seconds=$2 step
  for ((step = 0; step < seconds * 20; step++)); do
    compgen -G "$pattern" >/dev/null && return 0
    sleep 0.05
  done
  fail "nothing matched $pattern within $seconds s"
}
# shellcheck disable=SC2054 # "localhost," is an inventory of one host, not two array elements
converge_argv=(ansible-playbook -i localhost, -c local -e ansible_python_interpreter="$python" -e lab="$lab"
               -e prefix="${prefix:?}" "$collection/tests/playbooks/converge.yml")
converge() { "${converge_argv[@]}" "$@"; }
# Start a run in the background, in a session of its own; sets run to its pid (also its process group).
start_run() {
  setsid "${converge_argv[@]}" "$@" >"$run_log" 2>&1 &
  # shellcheck disable=SC2034 # for the scripts that source this one
  run=$!
}
# The inventory of a target whose one hypervisor is this machine: the lab holds its images and state, nothing is
# installed; the role's other variables come as YAML lines on stdin. migrate runs the playbook on it.
local_inventory() {
  {
    cat <<YAML
hypervisors:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: $python
  vars:
    disk_format_allowed_backing_dirs: ["$lab"]
    disk_format_state_dir: $lab/state
    disk_format_install_dependencies: false
YAML
    cat
  } > "$lab/inventory.yml"
}
migrate() { (cd "$lab" && ansible-playbook -i "$lab/inventory.yml" kvm.images.migrate "$@"); }
source_of() { "${virsh[@]}" domblklist "$1" | awk '$1 == "vda" {print $2}'; }
defined_source_of() { "${virsh[@]}" domblklist --inactive "$1" | awk '$1 == "vda" {print $2}'; }
left_behind() { find "$lab" -maxdepth 1 -name '.*.kvm-images-*' -printf '%f\n'; }
