package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	labcli "github.com/k8s-ha/labk3s/internal/cli"
)

// completionFile is where `k3s completion -i bash` installs the script, as k3s does.
const completionFile = "/etc/bash_completion.d/k3s"

// bashCompletion is a bash completion script for the lab's k3s: its commands
// and, after server or agent, that command's flags (taken from the same
// definitions the command line is parsed with, so they cannot drift apart).
func bashCompletion() string {
	flags := func(cmd string) string {
		var out []string
		for _, d := range labcli.Defs(cmd) {
			out = append(out, "--"+d.Name)
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	return fmt.Sprintf(`# bash completion for k3s (the lab's k3s, a test double of k3s)
_k3s_lab_complete() {
  local cur=${COMP_WORDS[COMP_CWORD]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "server agent kubectl completion --version --help" -- "$cur"))
    return
  fi
  case ${COMP_WORDS[1]} in
    server) COMPREPLY=($(compgen -W "%s --help" -- "$cur")) ;;
    agent) COMPREPLY=($(compgen -W "%s --help" -- "$cur")) ;;
    completion) COMPREPLY=($(compgen -W "bash -i" -- "$cur")) ;;
    *) COMPREPLY=() ;;
  esac
}
complete -o default -F _k3s_lab_complete k3s
`, flags("server"), flags("agent"))
}

// runCompletion is `k3s completion [-i] bash`: print the script, or install it with -i.
func runCompletion(args []string) int {
	install := false
	shell := ""
	for _, a := range args {
		switch a {
		case "-i", "--install", "-i=true", "--install=true":
			install = true
		case "-h", "--help":
			fmt.Print("Usage: k3s completion [-i] bash\n\n   -i, --install  install the script to " + completionFile + "\n")
			return 0
		default:
			shell = a
		}
	}
	if shell != "bash" {
		fmt.Fprintf(os.Stderr, "k3s completion: shell %q is not supported by the lab's k3s (bash only; k3s also has zsh)\n", shell)
		return 1
	}
	if !install {
		fmt.Print(bashCompletion())
		return 0
	}
	if err := os.WriteFile(completionFile, []byte(bashCompletion()), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "k3s completion: %v\n", err)
		return 1
	}
	fmt.Printf("Autocomplete for bash added to: %s\n", completionFile)
	return 0
}
