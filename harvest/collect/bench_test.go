package collect

import "testing"

// BenchmarkAddBatch folds one batch of GPT-2-small mlp.post_act (32 × 64
// tokens × 3072 units) into a unit state with top 20 / random 20, after the
// state has filled up; reports ns per unit-token.
func BenchmarkAddBatch(b *testing.B) {
	const B, T, U = 32, 64, 3072
	acts := data(B, T, U, 1)
	p := Params{Context: T, Top: 20, Random: 20}
	s, err := NewSite(SiteID{"mlp.post_act", 0}, U, p, 1, 0, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		s.AddBatch(int64(i*B), acts, B)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.AddBatch(int64((i+4)*B), acts, B); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*B*T*U), "ns/unit-token")
}
