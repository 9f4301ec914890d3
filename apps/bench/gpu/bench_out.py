"""Streaming JSON results shared by the Python peers (torch_peers.py, torch_models.py): every row is printed as
`ROW {...}` and the whole file is rewritten after it, so a step cut by its timeout keeps what it measured."""
import json, os, time


class Out:
    def __init__(self, path, meta, t0):
        self.path, self.meta, self.rows, self.t0 = path, meta, [], t0
        self.write()

    def write(self):
        if self.path:
            with open(self.path + '.tmp', 'w') as f:
                json.dump(dict(self.meta, rows=self.rows, seconds=time.time() - self.t0), f, indent=1)
            os.replace(self.path + '.tmp', self.path)

    def emit(self, row):
        self.rows.append(row)
        print('ROW ' + json.dumps(row), flush=True)
        self.write()
