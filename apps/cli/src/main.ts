import 'reflect-metadata';
import { Command, CommanderError } from 'commander';
import { IceError, type IceErrorCode } from '@ice/core';
import { registerWeightsCommand } from './commands/weights.command';
import { registerForwardCommand } from './commands/forward.command';
import { registerTrainCommands } from './commands/train.command';
import { registerEvalCommand } from './commands/eval.command';
import { registerDataCommands } from './commands/data.command';
import { registerRemoteCommands } from './commands/remote.command';
import { CliError, EXIT } from './remote/exit-codes';

/** `ice`: the command-line surface of the project. Each command lives in its own file. */
export function buildProgram(): Command {
  const program = new Command('ice')
    .description('ICE (adversarial normalization) for vision transformers in TensorFlow.js')
    .showHelpAfterError()
    .exitOverride();
  program.commandsGroup('Local commands (in this process):');
  registerWeightsCommand(program);
  registerForwardCommand(program);
  registerTrainCommands(program);
  registerEvalCommand(program);
  registerDataCommands(program);
  registerRemoteCommands(program);
  program.addHelpText(
    'after',
    `
Exit codes: 0 ok; 1 failed (a run, sweep or evaluation failed or was cancelled, or a local command failed);
2 usage or invalid input (the API's 400); 3 API unreachable or 5xx; 4 not found; 5 API key missing or wrong;
6 nothing to do (already finished); 7 not enough free worker slots for a data-parallel run (409 NO_CAPACITY).`,
  );
  return program;
}

/** The exit code of a domain error (the same table as the remote commands'). */
function exitCodeOf(code: IceErrorCode): number {
  switch (code) {
    case 'CONFIG_INVALID':
    case 'INPUT_INVALID':
      return EXIT.usage;
    case 'FILE_NOT_FOUND':
      return EXIT.notFound;
    case 'WEIGHTS_FORMAT':
    case 'WEIGHTS_MISMATCH':
    case 'CHECKPOINT_INVALID':
    case 'IMAGE_CORRUPT':
    case 'CANCELLED':
    case 'NON_FINITE_LOSS':
    case 'BACKEND_UNAVAILABLE':
    case 'RANK_TIMEOUT':
    case 'RANKS_APART':
    case 'NO_CAPACITY':
      return EXIT.failed;
  }
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version exit 0; every other commander error is a wrong command line.
      process.exitCode = e.exitCode === 0 ? 0 : EXIT.usage;
      return;
    }
    if (e instanceof CliError) {
      console.error(`ice: ${e.message}`);
      process.exitCode = e.exitCode;
      return;
    }
    if (e instanceof IceError) {
      console.error(`ice: ${e.code}: ${e.message}`);
      process.exitCode = exitCodeOf(e.code);
      return;
    }
    throw e;
  }
}

// Run directly (node bin/run-ts.js apps/cli/src/main.ts); bin/ice.js calls main() itself.
if (require.main === module) {
  void main(process.argv);
}
