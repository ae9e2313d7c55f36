# Sourced by the scripts that run on a lent GPU machine, in the repository root, with KIT naming their kit
# (scripts/gpu/pack.sh): installs the kit's Vulkan
# loader where the machine has none, points Vulkan at NVIDIA's driver, and defines `py_unxz FILE.xz`, which
# unpacks a file beside itself with Python's lzma (the machine may lack xz), and `unpack NAME DIR`, which
# unpacks the kit's NAME.xz program (scripts/gpu/pack.sh) to DIR/NAME.
KIT="${KIT:?the kit folder}"
if ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
  for f in "$KIT"/gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$nvidia_icd" ] && export VK_DRIVER_FILES="$nvidia_icd"
py_unxz() {
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    "$1" "${1%.xz}" && rm "$1"
}
unpack() { cp "$KIT/$1.xz" "$2/$1.xz" && py_unxz "$2/$1.xz" && chmod +x "$2/$1"; }
