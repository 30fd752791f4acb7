#!/usr/bin/env python3
"""Adds the platform-specific optional dependencies that npm leaves out of package-lock.json
(npm/cli#4828, #8805): `npm ci` refuses a lock file that lacks them, even for platforms it will
skip. Each missing entry is filled from the registry (version, resolved, integrity, os, cpu, libc).
Run after `npm install` changes the lock file: python3 scripts/lock-optional-deps.py"""
import json, subprocess, sys

path = 'package-lock.json'
lock = json.load(open(path))
pkgs = lock['packages']
added = 0
for key, entry in list(pkgs.items()):
    for name, spec in (entry.get('optionalDependencies') or {}).items():
        # npm resolves a dependency at the nearest node_modules going up from its parent.
        parts = key.split('node_modules/') if key else ['']
        candidates = []
        base = key
        while True:
            candidates.append((base + '/' if base else '') + 'node_modules/' + name)
            if 'node_modules/' not in base:
                break
            base = base[:base.rfind('node_modules/')].rstrip('/')
        if any(c in pkgs for c in candidates):
            continue
        try:
            info = json.loads(subprocess.check_output(['npm', 'view', f'{name}@{spec}', '--json', 'version', 'dist', 'os', 'cpu', 'libc', 'license', 'engines'], stderr=subprocess.DEVNULL))
            if isinstance(info, list):
                info = info[-1]
            new = {'version': info['version'], 'resolved': info['dist']['tarball'], 'integrity': info['dist']['integrity']}
            for f in ('cpu', 'os', 'libc', 'license', 'engines'):
                if info.get(f):
                    new[f] = info[f]
        except subprocess.CalledProcessError:
            # Not served by the registry this machine reaches. Record the platform from the
            # package name so npm skips it on other platforms; on its own platform the fetch of
            # an optional dependency may fail without failing the install.
            tail = name.rsplit('/', 1)[-1]
            new = {'version': spec.lstrip('^~=')}
            for os_ in ('linux', 'darwin', 'win32', 'freebsd', 'android'):
                if f'-{os_}-' in tail or tail.endswith(f'-{os_}'):
                    new['os'] = [os_]
            for cpu in ('x64', 'arm64', 'arm', 'ia32'):
                if f'-{cpu}-' in tail or tail.endswith(f'-{cpu}') or f'-{cpu}.' in tail:
                    new['cpu'] = [cpu]
                    break
            if 'musl' in tail:
                new['libc'] = ['musl']
            elif tail.endswith('-gnu'):
                new['libc'] = ['glibc']
            info = new
        if entry.get('dev'):
            new['dev'] = True
        new['optional'] = True
        pkgs['node_modules/' + name] = new
        added += 1
        print('added', name, info['version'], file=sys.stderr)
lock['packages'] = dict(sorted(pkgs.items(), key=lambda kv: (kv[0] != '', kv[0])))
json.dump(lock, open(path, 'w'), indent=2)
open(path, 'a').write('\n')
print(f'{added} entries added', file=sys.stderr)
