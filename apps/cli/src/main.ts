import 'reflect-metadata';
import { Command, CommanderError } from 'commander';
import { IceError } from '@ice/core';
import { registerWeightsCommand } from './commands/weights.command';
import { registerForwardCommand } from './commands/forward.command';
import { registerTrainCommands } from './commands/train.command';
import { registerEvalCommand } from './commands/eval.command';
import { registerDataCommands } from './commands/data.command';

/** `ice`: the command-line surface of the project. Each command lives in its own file. */
export function buildProgram(): Command {
  const program = new Command('ice')
    .description('ICE (adversarial normalization) for vision transformers in TensorFlow.js')
    .showHelpAfterError()
    .exitOverride();
  registerWeightsCommand(program);
  registerForwardCommand(program);
  registerTrainCommands(program);
  registerEvalCommand(program);
  registerDataCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode;
      return;
    }
    if (e instanceof IceError) {
      console.error(`ice: ${e.code}: ${e.message}`);
      process.exitCode = 1;
      return;
    }
    throw e;
  }
}

// Run directly (node bin/run-ts.js apps/cli/src/main.ts); bin/ice.js calls main() itself.
if (require.main === module) {
  void main(process.argv);
}
