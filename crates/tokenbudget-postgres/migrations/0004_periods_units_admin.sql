-- Periodic and cost budgets, closed budgets, and the model a reservation was priced for.
-- Existing budgets count tokens over their lifetime, open: the defaults say exactly that.
ALTER TABLE budgets
    ADD COLUMN unit TEXT NOT NULL DEFAULT 'tokens' CHECK (unit IN ('tokens', 'usd')),
    -- The period's canonical text (`daily tz=Europe/Berlin`, `3600s anchor=…`), NULL for none.
    ADD COLUMN period TEXT,
    -- The start of the window `used` counts in (microseconds), NULL for no period.
    ADD COLUMN window_start BIGINT,
    ADD COLUMN closed BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE reservations ADD COLUMN model TEXT;
