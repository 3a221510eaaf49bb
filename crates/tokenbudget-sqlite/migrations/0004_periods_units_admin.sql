-- Periodic and cost budgets, closed budgets, and the model a reservation was priced for.
-- Existing budgets count tokens over their lifetime, open: the defaults say exactly that.
ALTER TABLE budgets ADD COLUMN unit TEXT NOT NULL DEFAULT 'tokens' CHECK (unit IN ('tokens', 'usd'));
-- The period's canonical text (`daily tz=Europe/Berlin`, `3600s anchor=…`), NULL for none.
ALTER TABLE budgets ADD COLUMN period TEXT;
-- The start of the window `used` counts in (microseconds), NULL for no period.
ALTER TABLE budgets ADD COLUMN window_start INTEGER;
ALTER TABLE budgets ADD COLUMN closed INTEGER NOT NULL DEFAULT 0 CHECK (closed IN (0, 1));
ALTER TABLE reservations ADD COLUMN model TEXT;
