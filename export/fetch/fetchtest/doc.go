// Package fetchtest runs Azurite, the Azure Storage emulator, on loopback for tests of code
// that reads public blobs (export/fetch, the model export, the SAE loader).
//
// StartAzurite starts a blob server whose account is named "openaipublic", like the public
// one; Upload puts blobs into containers that allow anonymous reads. Point a fetch.Cache at it
// with Options.Endpoint = a.Endpoint and no credentials:
//
//	a := fetchtest.StartAzurite(t)
//	a.Upload("neuron-explainer", "subject-models/gpt2/small/config.json", cfg)
//	c, _ := fetch.New(fetch.Options{Dir: t.TempDir(), Endpoint: a.Endpoint})
//
// Azurite comes from npm: `make azurite` (scripts/install-azurite.sh) installs it into the
// per-user cache. Without it the tests that need it skip, loudly; under CI=true they fail.
package fetchtest
