package main

import "github.com/urfave/cli/v2"

func recordsCommand() *cli.Command {
	return &cli.Command{Name: "records", Usage: "read collated activation records"}
}
