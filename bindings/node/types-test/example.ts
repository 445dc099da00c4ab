// Type-checked only (`tsc --noEmit`), never run: the SDK's typings accept the documented API.
// tsconfig.json lists no `types`: Node's come from the typings' own reference, as in a project
// that only has `@types/node` installed.
import * as gloam from '..'
import type { Ctx } from '..'

const bar = (ctx: Ctx, input: Buffer): string => `Hello, ${input.toString()} from ${ctx.functionName}`

async function foo(ctx: Ctx, input: Buffer): Promise<Buffer> {
  const out: Buffer = await ctx.invoke('Bar', input)
  const many: Buffer[] = await Promise.all([ctx.invoke('Echo', 'a'), ctx.invoke('Echo', new Uint8Array([1]))])
  const deadline: number | null = ctx.deadline
  const id: string = ctx.callId
  void many
  void deadline
  void id
  return Buffer.concat([Buffer.from('From function Bar: '), out])
}

const done: Promise<void> = gloam.serve({
  Foo: foo,
  Bar: bar,
  Echo: (_ctx, input) => input,
  Bytes: async () => new Uint8Array([1, 2, 3]),
  Nop: () => undefined,
  Null: () => null,
  Nothing: async (): Promise<void> => {},
  Fail: () => {
    throw new Error('Fail was called')
  },
})

done.catch((err: Error & { code?: string }) => {
  if (err.code === 'GLOAM_E_FUNCTION_NOT_FOUND') console.error(err.message)
})

// @ts-expect-error: handlers must return bytes, a string or a Promise of one
gloam.serve({ Bad: () => 42 })
