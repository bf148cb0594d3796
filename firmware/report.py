"""The firmware run's report (scripts/cross.sh cortex-m4|cortex-m7): compares the device's
logits with the host's line by line and prints one JSON object (or a line) with the sizes from
the ELF, the arena, the stack and instructions per inference. Exit status 1 on any difference.

    python3 firmware/report.py TMP CPU MODEL.qm JSON(0|1)
TMP holds dev.txt (the firmware's semihosting output), host.out (firmware/host.c's), fw.elf."""
import json
import subprocess
import sys

tmp, cpu, qm, as_json = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == '1'
dev = open(tmp + '/dev.txt').read().splitlines()
host = open(tmp + '/host.out').read().splitlines()
if not dev or not dev[-1].startswith('{') or 'error' in dev[-1]:
    print(json.dumps({'target': cpu, 'model': qm, 'error': dev[-1] if dev else 'no output'}))
    sys.exit(1)
r = json.loads(dev[-1])
layers = [l.split() for l in dev if l.startswith('layer ')]
dev = [l for l in dev if not l.startswith('layer ')]
host = [l for l in host if not l.startswith('layer ')]
same = sum(a == b for a, b in zip(dev[:-1], host[:-1]))
nm = subprocess.run(['arm-none-eabi-nm', '-S', tmp + '/fw.elf'], capture_output=True,
                    text=True, check=True).stdout
sym = {f[3]: int(f[1], 16) for f in (l.split() for l in nm.splitlines()) if len(f) == 4}
size = subprocess.run(['arm-none-eabi-size', '-A', tmp + '/fw.elf'], capture_output=True,
                      text=True, check=True).stdout
sec = {l.split()[0]: int(l.split()[1]) for l in size.splitlines() if l.startswith('.')}
flash = sec.get('.text', 0) + sec.get('.ARM.exidx', 0) + sec.get('.data', 0)
ram = sec.get('.data', 0) + sec.get('.bss', 0) + sec.get('.stack', 0)
consts = sym.get('qd_model', 0) + sym.get('qd_images', 0) + sym.get('qd_labels', 0)
ipt = r['calib_instructions'] / r['calib_ticks']
out = {'target': cpu, 'model': qm, 'images': r['images'], 'identical': same,
       'accuracy': r['correct'] / r['images'], 'flash_bytes': flash,
       'flash_without_model': flash - consts, 'model_bytes': sym.get('qd_model', 0),
       'ram_bytes': ram, 'ram_without_arena': ram - sym.get('arena', 0),
       'arena_bytes': r['arena_bytes'], 'arena_stated': r['arena_stated'],
       'stack_bytes': r['stack_bytes'],
       'instructions_per_inference': round(r['ticks_total'] / r['images'] * ipt),
       'instructions_per_tick': ipt,
       'layers': [{'layer': int(l[1]), 'kernel': l[2], 'instructions': round(int(l[3]) * ipt)}
                  for l in layers]}
if as_json:
    print(json.dumps(out))
else:
    print('%s %s: %d/%d images identical to the host, accuracy %.1f%%, flash %d (%d without the '
          'model and images), RAM %d (arena %d = stated %d, stack %d), %.2fM instructions an '
          'inference' % (cpu, qm.split('/')[-1], same, r['images'], 100 * out['accuracy'], flash,
                         out['flash_without_model'], ram, r['arena_bytes'], r['arena_stated'],
                         r['stack_bytes'], out['instructions_per_inference'] / 1e6))
ok = same == r['images'] == len(host) - 1 and r['arena_bytes'] == r['arena_stated']
sys.exit(0 if ok else 1)
