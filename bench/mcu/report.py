"""bench/mcu_speed.sh's report: reads the bench firmware's lines for several models (each run
preceded by "model NAME BITS") from stdin and prints instructions per inference over the
convolution, depthwise and dense layers, ours and CMSIS-NN's, and the ratios.

    python3 bench/mcu/report.py CPU VERBOSE(0|1) JSON(0|1) < lines"""
import json
import sys

cpu, verbose, as_json = sys.argv[1], sys.argv[2] == '1', sys.argv[3] == '1'
runs, cur = [], None
for line in sys.stdin:
    f = line.split()
    if not f:
        continue
    if f[0] == 'model':
        cur = {'model': f[1], 'bits': int(f[2]), 'ours': {}, 'cmsis': {}}
        runs.append(cur)
    elif f[0] == 'ours':
        cur['ours'][int(f[1])] = {'op': f[2], 'kernel': f[3], 'wbits': int(f[4]),
                                  'macs': int(f[5]), 'ticks': int(f[6])}
    elif f[0] == 'cmsis':
        cur['cmsis'][int(f[1])] = {'kernel': f[2], 'ticks': int(f[3])}
    elif f[0].startswith('{'):
        c = json.loads(line)
        if 'error' in c:
            sys.exit('mcu_speed: %s %d-bit: %s' % (cur['model'], cur['bits'], c['error']))
        cur['ipt'] = c['calib_instructions'] / c['calib_ticks']

rows = []
for r in runs:
    if 'ipt' not in r:
        sys.exit('mcu_speed: %s %d-bit: the firmware did not finish' % (r['model'], r['bits']))
    ipt = r['ipt']
    layers = []
    for i, c in sorted(r['cmsis'].items()):
        o = r['ours'][i]
        if c['kernel'] == 'error':
            sys.exit('mcu_speed: CMSIS-NN refused layer %d of %s' % (i, r['model']))
        layers.append({'layer': i, 'op': o['op'], 'wbits': o['wbits'], 'macs': o['macs'],
                       'ours_kernel': o['kernel'], 'ours': round(o['ticks'] * ipt),
                       'cmsis_kernel': c['kernel'],
                       'cmsis': round(c['ticks'] * ipt) if c['kernel'] != 'none' else None})
    ours = sum(l['ours'] for l in layers)
    peer = sum(l['cmsis'] for l in layers) if all(l['cmsis'] for l in layers) else None
    rows.append({'cpu': cpu, 'model': r['model'], 'bits': r['bits'], 'macs':
                 sum(l['macs'] for l in layers), 'ours': ours, 'cmsis': peer,
                 'ours_vs_cmsis': round(ours / peer, 3) if peer else None, 'layers': layers})
for r in rows:  # 2-bit against our own 4-bit, the goal where CMSIS-NN has no kernel
    four = [x for x in rows if x['model'] == r['model'] and x['bits'] == 4]
    if r['bits'] == 2 and four:
        r['ours_vs_our_4bit'] = round(r['ours'] / four[0]['ours'], 3)

if as_json:
    for r in rows:
        if not verbose:
            r = {k: v for k, v in r.items() if k != 'layers'}
        print(json.dumps(r))
    sys.exit(0)
print('%s, instructions per inference over the conv/depthwise/dense layers (QEMU -icount)' % cpu)
print('%-10s %4s %10s %12s %12s %8s %s' % ('model', 'bits', 'MACs', 'ours', 'CMSIS-NN',
                                           'ours/CM', 'note'))
for r in rows:
    note = ''
    if 'ours_vs_our_4bit' in r:
        note = 'CMSIS-NN has no 2-bit kernels; ours / our 4-bit = %.3f' % r['ours_vs_our_4bit']
    print('%-10s %4d %10d %12d %12s %8s %s' % (
        r['model'], r['bits'], r['macs'], r['ours'], r['cmsis'] if r['cmsis'] else '-',
        '%.3f' % r['ours_vs_cmsis'] if r['ours_vs_cmsis'] else '-', note))
    if verbose:
        for l in r['layers']:
            print('    %3d %-6s %9d  ours %-4s %10d %5.2f/MAC   %-18s %10s %s' % (
                l['layer'], l['op'], l['macs'], l['ours_kernel'], l['ours'],
                l['ours'] / l['macs'], l['cmsis_kernel'], l['cmsis'] if l['cmsis'] else '-',
                '%.2f' % (l['ours'] / l['cmsis']) if l['cmsis'] else ''))
