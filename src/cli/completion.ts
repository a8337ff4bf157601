// `baton completion bash|zsh`: shell completion written from the program's own commander
// definitions (the commands and options its --help shows, their choices, and `<path>`
// arguments completed as files), so it can never lag behind the program.
import type { Command, Help, Option } from 'commander';

interface Spec {
  name: string;
  description: string;
  options: { flags: string[]; description: string; value: 'none' | 'path' | 'text'; choices: string[] }[];
  /** Choices of its first operand (`completion <shell>`). */
  operands: string[];
  /** Takes a command line after `--`. */
  commandLine: boolean;
}

function optionSpec(o: Option): Spec['options'][number] {
  const value = !o.required && !o.optional ? 'none' : /<path>|\[path\]/.test(o.flags) ? 'path' : 'text';
  return { flags: [o.short, o.long].filter((f): f is string => !!f), description: o.description, value, choices: o.argChoices ?? [] };
}

function specs(program: Command): { top: Spec; commands: Spec[] } {
  const help: Help = program.createHelp();
  const spec = (c: Command): Spec => ({
    name: c.name(),
    description: help.subcommandDescription(c),
    options: help.visibleOptions(c).map(optionSpec),
    operands: c.registeredArguments[0]?.argChoices ?? [],
    commandLine: c.registeredArguments.some((a) => a.variadic),
  });
  return { top: spec(program), commands: help.visibleCommands(program).map(spec) };
}

export function completionScript(program: Command, shell: 'bash' | 'zsh'): string {
  const s = specs(program);
  return shell === 'bash' ? bash(s.top, s.commands) : zsh(s.top, s.commands);
}

const words = (xs: string[]): string => xs.join(' ');

function bash(top: Spec, commands: Spec[]): string {
  const name = top.name;
  const fn = `_${name}`;
  const cases = commands.map((c) => {
    const values = c.options
      .filter((o) => o.value !== 'none')
      .map((o) => `        ${o.flags.join('|')}) ${o.choices.length ? `COMPREPLY=($(compgen -W "${words(o.choices)}" -- "$cur")); ` : ''}return 0 ;;`);
    const operands = c.operands.length ? `\n      [[ $cur != -* ]] && { COMPREPLY=($(compgen -W "${words(c.operands)}" -- "$cur")); return 0; }` : '';
    return `    ${c.name})
      case $prev in
${values.join('\n')}
      esac${operands}
      [[ $cur == -* ]] && COMPREPLY=($(compgen -W "${words(c.options.flatMap((o) => o.flags))}" -- "$cur"))
      ;;`;
  });
  return `# bash completion for ${name}, written by \`${name} completion bash\`.
# Load it with: source <(${name} completion bash), or save it under
# /etc/bash_completion.d/ or ~/.local/share/bash-completion/completions/${name}.
${fn}() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} cmd= i
  COMPREPLY=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    if [[ -z $cmd ]]; then
      [[ \${COMP_WORDS[i]} != -* ]] && cmd=\${COMP_WORDS[i]}
    elif [[ \${COMP_WORDS[i]} == -- ]]; then
      return 0 # a command line follows: files and commands, as the shell completes them
    fi
  done
  case $cmd in
    '')
      COMPREPLY=($(compgen -W "${words([...commands.map((c) => c.name), ...top.options.flatMap((o) => o.flags)])}" -- "$cur"))
      ;;
${cases.join('\n')}
  esac
}
complete -o default -F ${fn} ${name}
`;
}

/** Text inside single quotes. */
function q(text: string): string {
  return text.replace(/'/g, `'\\''`);
}

/** An explanation inside the brackets of an _arguments spec, single-quoted. */
function zq(text: string): string {
  return q(text.replace(/([[\]\\])/g, '\\$1'));
}

function zsh(top: Spec, commands: Spec[]): string {
  const name = top.name;
  const fn = `_${name}`;
  const option = (o: Spec['options'][number]): string => {
    const action =
      o.value === 'none'
        ? ''
        : `:${o.value === 'path' ? 'path' : 'value'}:${o.choices.length ? `(${o.choices.join(' ')})` : o.value === 'path' ? '_files' : ' '}`;
    const spec = `[${zq(o.description)}]${action}`;
    return o.flags.length === 1 ? `'*${o.flags[0]}${spec}'` : `'*'{${o.flags.join(',')}}'${spec}'`;
  };
  const cases = commands.map((c) => {
    const args = [...c.options.map(option)];
    if (c.operands.length) args.push(`'1:${c.name}:(${c.operands.join(' ')})'`);
    if (c.commandLine) args.push(`'*:: :_normal'`);
    return `    ${c.name})\n      _arguments -s -S \\\n        ${args.join(' \\\n        ')}\n      ;;`;
  });
  return `#compdef ${name}
# zsh completion for ${name}, written by \`${name} completion zsh\`.
# Load it with: source <(${name} completion zsh) after compinit, or save it as _${name}
# in a directory of $fpath.
${fn}() {
  local -a commands
  commands=(
${commands.map((c) => `    '${q(c.name)}:${q(c.description)}'`).join('\n')}
  )
  if (( CURRENT == 2 )); then
    _describe -t commands '${name} command' commands
    _arguments ${top.options.map(option).join(' ')}
    return
  fi
  local cmd=$words[2]
  shift words
  (( CURRENT-- ))
  case $cmd in
${cases.join('\n')}
  esac
}
if [[ $funcstack[1] == ${fn} ]]; then
  ${fn} "$@"
else
  compdef ${fn} ${name}
fi
`;
}
