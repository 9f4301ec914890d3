/**
 * A minimal ONNX model writer (protobuf wire format) for the peer benchmarks: enough of ModelProto to state an
 * attention graph (MatMul → Mul → Softmax → MatMul) or a single MatMul with float inputs of fixed shapes.
 */
class Writer {
  private bytes: number[] = [];
  varint(v: number): this {
    let x = BigInt(v);
    if (x < 0n) x += 1n << 64n;
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x) b |= 0x80;
      this.bytes.push(b);
    } while (x);
    return this;
  }
  tag(field: number, wire: number): this {
    return this.varint((field << 3) | wire);
  }
  int(field: number, v: number): this {
    return this.tag(field, 0).varint(v);
  }
  str(field: number, s: string): this {
    return this.msg(field, new TextEncoder().encode(s));
  }
  msg(field: number, body: Uint8Array): this {
    this.tag(field, 2).varint(body.length);
    for (const b of body) this.bytes.push(b);
    return this;
  }
  float(field: number, v: number): this {
    this.tag(field, 5);
    for (const b of new Uint8Array(new Float32Array([v]).buffer)) this.bytes.push(b);
    return this;
  }
  done(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

/** One node of the graph: `op` with inputs, outputs and int / ints / float attributes. */
export interface OnnxNode {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs?: Record<string, number | number[]>;
}

function valueInfo(name: string, shape: readonly number[]): Uint8Array {
  const dims = new Writer();
  for (const d of shape) dims.msg(1, new Writer().int(1, d).done());
  const tensorType = new Writer().int(1, 1 /* FLOAT */).msg(2, dims.done()).done();
  return new Writer().str(1, name).msg(2, new Writer().msg(1, tensorType).done()).done();
}

/** Serialises a float32 ONNX model (opset 17) with the given graph inputs, outputs and nodes. */
export function onnxModel(inputs: Record<string, readonly number[]>, outputs: Record<string, readonly number[]>, nodes: OnnxNode[]): Uint8Array {
  const g = new Writer();
  nodes.forEach((n, i) => {
    const w = new Writer();
    n.inputs.forEach((x) => w.str(1, x));
    n.outputs.forEach((x) => w.str(2, x));
    w.str(3, `n${i}`).str(4, n.op);
    for (const [name, v] of Object.entries(n.attrs ?? {})) {
      const a = new Writer().str(1, name);
      if (Array.isArray(v)) {
        v.forEach((x) => a.int(8, x));
        a.int(20, 7 /* INTS */);
      } else if (Number.isInteger(v)) a.int(3, v).int(20, 2 /* INT */);
      else a.float(2, v).int(20, 1 /* FLOAT */);
      w.msg(5, a.done());
    }
    g.msg(1, w.done());
  });
  g.str(2, 'g');
  for (const [n, s] of Object.entries(inputs)) g.msg(11, valueInfo(n, s));
  for (const [n, s] of Object.entries(outputs)) g.msg(12, valueInfo(n, s));
  return new Writer().int(1, 8).msg(8, new Writer().str(1, '').int(2, 17).done()).msg(7, g.done()).done();
}
